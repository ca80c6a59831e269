"""The topology of a triangle mesh, as the engine needs it: closedness, parts, genus, volume,
face normals and areas, self-intersections.

Mesh arguments are ``V (n,3) float`` and ``F (m,3) int``. Extraction, simplification and the
printing tools check their results with these; tests and benchmarks use them too.

Example
-------
>>> from lipsdf_blender.core.inputs.primitives import icosphere
>>> V, F = icosphere(1.0, 2)
>>> is_watertight(F), connected_components(F), genus(V, F)
(True, 1, 0)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components as _cc

from ..errors import BadInputError
from ..types import Faces, Points


def as_mesh(V, F) -> tuple[Points, Faces]:
    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64).reshape(-1, 3)
    return V, F


def face_normals(V, F) -> tuple[Points, np.ndarray]:
    """Unit face normals and face areas.

    Returns
    -------
    N : (m, 3) float64
        Unit normals (zero rows for degenerate faces).
    area : (m,) float64
        Face areas, in squared units.
    """
    V, F = as_mesh(V, F)
    c = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    dbl = np.linalg.norm(c, axis=1)
    N = np.divide(c, dbl[:, None], out=np.zeros_like(c), where=dbl[:, None] > 0)
    return N, 0.5 * dbl


def _directed_edges(F) -> np.ndarray:
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    return np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])


def _edge_keys(e: np.ndarray, n: int | None = None) -> np.ndarray:
    """One int64 per vertex pair ``(i, j)``: ``i * n + j``, ``n`` past the largest index
    (found when not given).

    Sorting these is an order of magnitude faster than ``np.unique(..., axis=0)`` on the pairs
    (1.9 s of a 2-core remesh of 200k faces went to the row-wise sorts).
    """
    if n is None:
        n = int(e.max()) + 1 if len(e) else 1
    return e[:, 0] * n + e[:, 1]


def boundary_edges(F) -> np.ndarray:
    """Undirected edges used by exactly one face.

    Returns
    -------
    E : (b, 2) int64
        Sorted vertex pairs; empty for a closed mesh.
    """
    e = np.sort(_directed_edges(F), axis=1)
    if len(e) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    n = int(e.max()) + 1
    uniq, counts = np.unique(_edge_keys(e, n), return_counts=True)
    once = uniq[counts == 1]
    return np.stack([once // n, once % n], axis=1)


def is_watertight(F) -> bool:
    """True if the mesh is closed, edge-manifold and consistently oriented.

    Every undirected edge is shared by exactly two faces which use it in opposite directions,
    i.e. every directed edge ``(i, j)`` occurs exactly once and so does ``(j, i)``. Degenerate
    faces (a repeated vertex) make a mesh not watertight.
    """
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    if len(F) == 0:
        return False
    if np.any((F[:, 0] == F[:, 1]) | (F[:, 1] == F[:, 2]) | (F[:, 2] == F[:, 0])):
        return False
    d = _directed_edges(F)
    keys = np.sort(_edge_keys(d))
    if np.any(keys[1:] == keys[:-1]):  # a directed edge used twice
        return False
    # each directed edge must have its reverse: the set of edges equals the set of reverses
    rev = np.sort(_edge_keys(d[:, ::-1]))
    return bool(np.array_equal(rev, keys))


def euler_characteristic(V, F) -> int:
    """``V - E + F`` counting only vertices that some face uses.

    Unreferenced vertices (loose points) are left out so they do not change the topology.
    """
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    nv = len(np.unique(F))
    ne = len(np.unique(_edge_keys(np.sort(_directed_edges(F), axis=1)))) if len(F) else 0
    return int(nv - ne + len(F))


def component_labels(F, n_vertices: int) -> tuple[int, np.ndarray]:
    """Edge-connected pieces: their count and a ``(n_vertices,)`` label per vertex.

    An unreferenced vertex is a piece of its own (see :func:`connected_components`, which
    leaves them out).
    """
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    e = _directed_edges(F)
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n_vertices, n_vertices))
    k, label = _cc(A, directed=False)
    return int(k), label


def connected_components(F) -> int:
    """Number of edge-connected pieces of the mesh (unreferenced vertices ignored)."""
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    if len(F) == 0:
        return 0
    used, inv = np.unique(F, return_inverse=True)
    return component_labels(inv.reshape(F.shape), len(used))[0]


def genus(V, F) -> int:
    """Genus of a closed mesh: 1 for a torus, 0 for a sphere.

    For several closed components this is the sum of their genera, ``c - chi / 2``.

    Raises
    ------
    BadInputError
        If the mesh is not watertight (genus is only defined for closed surfaces here).
    """
    if not is_watertight(F):
        raise BadInputError(
            "Genus is only defined for a closed, consistently oriented mesh; this one has "
            "holes, non-manifold or flipped edges."
        )
    chi = euler_characteristic(V, F)
    c = connected_components(F)
    return int(round(c - chi / 2))


def signed_volume(V, F) -> float:
    """Volume enclosed by a closed mesh (cubic units); negative if the normals point inward.

    For an open mesh this is the volume of the cone from the origin and depends on the origin.
    """
    V, F = as_mesh(V, F)
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _weld(V, F) -> tuple[Points, Faces]:
    """Merge vertices at exactly the same position (unwelded copies of one corner)."""
    V, F = as_mesh(V, F)
    U, inv = np.unique(V, axis=0, return_inverse=True)
    return U, inv.reshape(-1)[F]


def _box_pairs(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Pairs ``(i, j), i < j`` of boxes ``[lo, hi] (m,3)`` that overlap, by a uniform grid."""
    m = len(lo)
    if m < 2:
        return np.zeros((0, 2), dtype=np.int64)
    origin = lo.min(axis=0)
    ext = (hi - lo).max(axis=1)
    h = 2.0 * float(np.median(ext))
    h = h if h > 0 else float((hi.max(axis=0) - origin).max()) or 1.0
    while True:  # a few huge boxes among tiny ones: coarsen until the cell lists stay small
        ilo = np.floor((lo - origin) / h).astype(np.int64)
        ihi = np.floor((hi - origin) / h).astype(np.int64)
        span = ihi - ilo + 1
        cnt = span.prod(axis=1)
        if cnt.sum() <= 64 * m + 1024:
            break
        h *= 2.0
    box = np.repeat(np.arange(m), cnt)
    k = np.arange(len(box)) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    sx, sy = span[box, 0], span[box, 1]
    cell = ilo[box] + np.stack([k % sx, (k // sx) % sy, k // (sx * sy)], axis=1)
    dims = cell.max(axis=0) + 1
    key = cell[:, 0] + dims[0] * (cell[:, 1] + dims[1] * cell[:, 2])
    order = np.argsort(key, kind="stable")
    key, box = key[order], box[order]
    found = []
    o = 1
    while o < len(key):  # sorted keys: pairs at offset o exist only while some cell has > o
        same = key[:-o] == key[o:]
        if not same.any():
            break
        found.append(np.stack([box[:-o][same], box[o:][same]], axis=1))
        o += 1
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.sort(np.concatenate(found), axis=1)
    pairs = np.unique(pairs[:, 0] * m + pairs[:, 1])
    pairs = np.stack([pairs // m, pairs % m], axis=1)
    a, b = pairs[:, 0], pairs[:, 1]
    keep = np.all((lo[a] <= hi[b]) & (lo[b] <= hi[a]), axis=1)
    return pairs[keep]


def _cross2(o, a, b) -> np.ndarray:
    """z of ``(a - o) x (b - o)`` for 2D points ``(k, 2)``."""
    return (a[:, 0] - o[:, 0]) * (b[:, 1] - o[:, 1]) - (a[:, 1] - o[:, 1]) * (b[:, 0] - o[:, 0])


def _coplanar_overlap(A, B, normal, eps: float) -> np.ndarray:
    """Whether coplanar triangles ``A, B (k,3,3)`` share interior area (not just touch)."""
    drop = np.argmax(np.abs(normal), axis=1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[drop]
    a = np.take_along_axis(A, keep[:, None, :], axis=2)
    b = np.take_along_axis(B, keep[:, None, :], axis=2)
    hit = np.zeros(len(A), dtype=bool)
    for i in range(3):  # edges that cross properly
        p, q = a[:, i], a[:, (i + 1) % 3]
        for j in range(3):
            r, s = b[:, j], b[:, (j + 1) % 3]
            o1, o2 = _cross2(p, q, r), _cross2(p, q, s)
            o3, o4 = _cross2(r, s, p), _cross2(r, s, q)
            hit |= (o1 * o2 < -eps) & (o3 * o4 < -eps)

    def strictly_inside(pt, t):
        s = [_cross2(t[:, i], t[:, (i + 1) % 3], pt) for i in range(3)]
        return ((s[0] > eps) & (s[1] > eps) & (s[2] > eps)) | (
            (s[0] < -eps) & (s[1] < -eps) & (s[2] < -eps)
        )

    for i in range(3):
        hit |= strictly_inside(a[:, i], b) | strictly_inside(b[:, i], a)
    # equal triangles with different vertex indices: same centroid strictly inside both
    hit |= strictly_inside(a.mean(axis=1), b) & strictly_inside(b.mean(axis=1), a)
    return hit


# Corners closer than this fraction of a pair's size to the other's plane: one plane.
_FLAT = 1e-6


def _triangles_cross(A, B, eps: float) -> np.ndarray:
    """Whether triangles ``A[i]`` and ``B[i]`` ``(k,3,3)`` meet along more than a point.

    Moller's interval test: each triangle cuts the other's plane in a segment of the line
    where the planes meet; the triangles cross when the two segments overlap by more than
    ``eps`` measured out of the planes (overlap x sine of their angle). Triangles that meet
    only along their edges do not cross. Coplanar pairs (corners within ``eps`` plus 1e-6 of
    the pair's size of the other's plane) cross when they share interior area.
    """
    nA = np.cross(A[:, 1] - A[:, 0], A[:, 2] - A[:, 0])
    nB = np.cross(B[:, 1] - B[:, 0], B[:, 2] - B[:, 0])
    nA /= np.linalg.norm(nA, axis=1, keepdims=True)
    nB /= np.linalg.norm(nB, axis=1, keepdims=True)
    dA = np.einsum("kij,kj->ki", A - B[:, :1], nB)  # A's corners above B's plane
    dB = np.einsum("kij,kj->ki", B - A[:, :1], nA)
    # Pairs whose corners all lie within 1e-6 of the pair's size of the other's plane are
    # one plane (far below a Blender mesh's float32 rounding): the line where two such
    # planes meet, which the interval test needs, is lost in rounding (neighbours on flat
    # stretches of a remesh, or around a grid corner that marching cubes cut very near).
    size = np.linalg.norm(np.ptp(np.concatenate([A, B], axis=1), axis=1), axis=1)
    flat = np.maximum(np.abs(dA).max(axis=1), np.abs(dB).max(axis=1)) <= eps + _FLAT * size
    exactA, exactB = dA.copy(), dB.copy()  # the segments are cut where the planes really are
    dA[np.abs(dA) <= eps] = 0.0
    dB[np.abs(dB) <= eps] = 0.0
    apart = (
        np.all(dA > 0, axis=1)
        | np.all(dA < 0, axis=1)
        | np.all(dB > 0, axis=1)
        | np.all(dB < 0, axis=1)
    )
    coplanar = flat | (np.all(dA == 0, axis=1) & np.all(dB == 0, axis=1))
    hit = np.zeros(len(A), dtype=bool)
    if coplanar.any():
        c = coplanar & ~apart
        hit[c] = _coplanar_overlap(A[c], B[c], nA[c], eps * eps)
    # A triangle with no corners on both sides of the other's plane meets it only along its
    # own boundary; when both do, they meet only where their edges meet: touching.
    cutA = np.any(dA > 0, axis=1) & np.any(dA < 0, axis=1)
    cutB = np.any(dB > 0, axis=1) & np.any(dB < 0, axis=1)
    live = ~apart & ~coplanar & (cutA | cutB)
    if not live.any():
        return hit
    A, B, dA, dB = A[live], B[live], exactA[live], exactB[live]
    D = np.cross(nA[live], nB[live])
    sine = np.linalg.norm(D, axis=1)
    D /= np.maximum(sine, 1e-300)[:, None]

    def interval(T, d):
        lo = np.full(len(T), np.inf)
        hi = np.full(len(T), -np.inf)
        t = np.einsum("kij,kj->ki", T, D)
        for i in range(3):
            j = (i + 1) % 3
            on = d[:, i] == 0
            lo = np.where(on, np.minimum(lo, t[:, i]), lo)
            hi = np.where(on, np.maximum(hi, t[:, i]), hi)
            cut = d[:, i] * d[:, j] < 0
            with np.errstate(divide="ignore", invalid="ignore"):
                x = t[:, i] + (t[:, j] - t[:, i]) * d[:, i] / (d[:, i] - d[:, j])
            lo = np.where(cut, np.minimum(lo, x), lo)
            hi = np.where(cut, np.maximum(hi, x), hi)
        return lo, hi

    loA, hiA = interval(A, dA)
    loB, hiB = interval(B, dB)
    # The overlap counts when it reaches more than eps out of either plane.
    hit[live] = (np.minimum(hiA, hiB) - np.maximum(loA, loB)) * sine > eps
    return hit


def self_intersections(V, F, chunk: int = 500_000) -> int:
    """Number of face pairs that cross each other, among pairs that share no vertex.

    Vertices at the same position are merged first, so an unwelded seam does not count. Pairs
    that share a vertex or an edge are not tested (neighbours always touch there); two faces
    that only touch at a point or along an edge do not count. Coplanar faces count when they
    overlap in area. Candidates come from a uniform grid of face boxes, and each is tested
    exactly as Moller's triangle-triangle test does, in numpy. Tolerance: 1e-9 of the
    bounding-box diagonal.

    Parameters
    ----------
    V : (n, 3) float
    F : (m, 3) int

    Returns
    -------
    int
        0 for a clean closed surface such as a sphere.
    """
    V, F = _weld(V, F)
    if len(F) < 2:
        return 0
    T = V[F]
    _, area = face_normals(V, F)
    good = np.flatnonzero(area > 0)
    diag = float(np.linalg.norm(V.max(axis=0) - V.min(axis=0)))
    eps = 1e-9 * diag
    lo = T[good].min(axis=1) - eps
    hi = T[good].max(axis=1) + eps
    pairs = good[_box_pairs(lo, hi)]
    if len(pairs) == 0:
        return 0
    Fa, Fb = F[pairs[:, 0]], F[pairs[:, 1]]
    shared = (Fa[:, :, None] == Fb[:, None, :]).any(axis=(1, 2))
    pairs = pairs[~shared]
    count = 0
    for s in range(0, len(pairs), chunk):
        p = pairs[s : s + chunk]
        count += int(_triangles_cross(T[p[:, 0]], T[p[:, 1]], eps).sum())
    return count
