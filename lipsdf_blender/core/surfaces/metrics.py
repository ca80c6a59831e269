"""Surface sampling, distances between meshes and topology checks, for tests and benchmarks.

All distances are in the meshes' own units. Mesh arguments are ``V (n,3) float`` and
``F (m,3) int``; nothing here needs a closed or manifold mesh except :func:`genus`.

Example
-------
>>> from lipsdf_blender.core.inputs.primitives import icosphere
>>> VA, FA = icosphere(1.0, 3)
>>> VB, FB = icosphere(1.01, 3)
>>> round(chamfer_hausdorff(VA, FA, VB, FB)["chamfer_l1"], 3)
0.01
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components as _cc

from ..errors import BadInputError
from ..types import Faces, Points


def _mesh(V, F) -> tuple[Points, Faces]:
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
    V, F = _mesh(V, F)
    c = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    dbl = np.linalg.norm(c, axis=1)
    N = np.divide(c, dbl[:, None], out=np.zeros_like(c), where=dbl[:, None] > 0)
    return N, 0.5 * dbl


def sample_surface(V, F, n: int, seed: int = 0) -> tuple[Points, Points]:
    """Points drawn uniformly by area on a triangle mesh, with their faces' normals.

    Parameters
    ----------
    V : (nv, 3) float
    F : (m, 3) int
    n : int
        Number of samples.
    seed : int
        Seed of numpy's generator; the same seed gives the same samples.

    Returns
    -------
    P : (n, 3) float64
        Sample positions on the surface.
    N : (n, 3) float64
        Unit normal of the face each sample lies on (the mesh's orientation).
    """
    V, F = _mesh(V, F)
    FN, area = face_normals(V, F)
    total = area.sum()
    if len(F) == 0 or not total > 0:
        raise BadInputError("Cannot sample a mesh with no faces of non-zero area.")
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(area) / total
    fi = np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), len(F) - 1)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    b = np.stack([1.0 - s, s * (1.0 - r2), s * r2], -1)
    P = np.einsum("nk,nkd->nd", b, V[F[fi]])
    return P, FN[fi]


def _point_mesh_distance(P, V, F) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each of ``P (k,3)`` to the mesh, and the index of the closest face."""
    import igl

    d2, fi, _ = igl.point_mesh_squared_distance(np.ascontiguousarray(P, dtype=np.float64), V, F)
    return np.sqrt(np.maximum(d2, 0.0)), np.asarray(fi, dtype=np.int64)


def chamfer_hausdorff(VA, FA, VB, FB, n: int = 20000, seed: int = 0) -> dict[str, float]:
    """Symmetric Chamfer (L1) and Hausdorff distances between two meshes.

    Each surface is sampled with ``n`` area-uniform points whose exact distance to the other
    mesh (point to triangle, not to its samples) is measured. The vertices also count for the
    maximum, so the Hausdorff distance is not missed at corners.

    Parameters
    ----------
    VA, FA, VB, FB : (n, 3) float and (m, 3) int
        The two meshes.
    n : int
        Samples per surface.
    seed : int

    Returns
    -------
    dict
        ``chamfer_l1``: mean of the two directed mean distances; ``hausdorff``: max of the two
        directed max distances; ``a_to_b_mean``, ``b_to_a_mean``, ``a_to_b_max``,
        ``b_to_a_max``: the directed values. All in mesh units.
    """
    VA, FA = _mesh(VA, FA)
    VB, FB = _mesh(VB, FB)
    PA, _ = sample_surface(VA, FA, n, seed)
    PB, _ = sample_surface(VB, FB, n, seed + 1)
    dab, _ = _point_mesh_distance(PA, VB, FB)
    dba, _ = _point_mesh_distance(PB, VA, FA)
    vab, _ = _point_mesh_distance(VA[np.unique(FA)], VB, FB)
    vba, _ = _point_mesh_distance(VB[np.unique(FB)], VA, FA)
    out = {
        "a_to_b_mean": float(dab.mean()),
        "b_to_a_mean": float(dba.mean()),
        "a_to_b_max": float(max(dab.max(), vab.max())),
        "b_to_a_max": float(max(dba.max(), vba.max())),
    }
    out["chamfer_l1"] = 0.5 * (out["a_to_b_mean"] + out["b_to_a_mean"])
    out["hausdorff"] = max(out["a_to_b_max"], out["b_to_a_max"])
    return out


def normal_consistency(VA, FA, VB, FB, n: int = 20000, seed: int = 0) -> float:
    """Mean ``|n_a . n_b|`` between a sample's face normal and the closest face's normal.

    Measured both ways (samples on A against B, samples on B against A) and averaged. 1 means
    the surfaces are parallel everywhere; orientation is ignored.

    Returns
    -------
    float
        In ``[0, 1]``.
    """
    VA, FA = _mesh(VA, FA)
    VB, FB = _mesh(VB, FB)
    NA, _ = face_normals(VA, FA)
    NB, _ = face_normals(VB, FB)
    PA, nA = sample_surface(VA, FA, n, seed)
    PB, nB = sample_surface(VB, FB, n, seed + 1)
    _, fab = _point_mesh_distance(PA, VB, FB)
    _, fba = _point_mesh_distance(PB, VA, FA)
    ab = np.abs(np.einsum("ij,ij->i", nA, NB[fab])).mean()
    ba = np.abs(np.einsum("ij,ij->i", nB, NA[fba])).mean()
    return float(0.5 * (ab + ba))


def _directed_edges(F) -> np.ndarray:
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    return np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])


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
    uniq, counts = np.unique(e, axis=0, return_counts=True)
    return uniq[counts == 1]


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
    uniq, counts = np.unique(d, axis=0, return_counts=True)
    if np.any(counts != 1):
        return False
    # each directed edge must have its reverse: the set of edges equals the set of reverses
    rev = np.unique(d[:, ::-1], axis=0)
    return bool(len(rev) == len(uniq) and np.array_equal(rev, uniq))


def euler_characteristic(V, F) -> int:
    """``V - E + F`` counting only vertices that some face uses.

    Unreferenced vertices (loose points) are left out so they do not change the topology.
    """
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    nv = len(np.unique(F))
    ne = len(np.unique(np.sort(_directed_edges(F), axis=1), axis=0)) if len(F) else 0
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
    V, F = _mesh(V, F)
    a, b, c = V[F[:, 0]], V[F[:, 1]], V[F[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def volume_iou(inside_a, inside_b) -> float:
    """Intersection over union of two boolean occupancy arrays of the same shape.

    Parameters
    ----------
    inside_a, inside_b : (k,) bool
        Whether each of ``k`` query points (e.g. a grid) is inside shape A and shape B.

    Returns
    -------
    float
        ``|A and B| / |A or B|``; 1.0 when both are empty.
    """
    a = np.asarray(inside_a, dtype=bool)
    b = np.asarray(inside_b, dtype=bool)
    if a.shape != b.shape:
        raise BadInputError(f"volume_iou needs arrays of one shape; got {a.shape} and {b.shape}.")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


# -- side-by-side reports (benchmarks/bench_peers.py, issue 9) -------------------------------


def winding_inside(V, F, Q) -> np.ndarray:
    """Whether each of ``Q (k,3)`` is inside the mesh: generalised winding number > 0.5.

    Works for open meshes and soups too (libigl's fast winding number), so "inside" means the
    same solid for an input with holes and for a closed result.

    Returns
    -------
    (k,) bool
    """
    import igl

    V, F = _mesh(V, F)
    Q = np.ascontiguousarray(Q, dtype=np.float64).reshape(-1, 3)
    if len(F) == 0 or len(Q) == 0:
        return np.zeros(len(Q), dtype=bool)
    return np.asarray(igl.fast_winding_number(V, F, Q)) > 0.5


def grown_box(V, growth: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Corners ``lo, hi (3,)`` of the bounding box of ``V`` grown by ``growth`` of its size
    on every side."""
    V = np.asarray(V, dtype=np.float64).reshape(-1, 3)
    lo, hi = V.min(axis=0), V.max(axis=0)
    pad = growth * (hi - lo)
    return lo - pad, hi + pad


def oriented_samples(V, F, n: int, seed: int = 0) -> tuple[Points, Points, float]:
    """Area-uniform samples with normals turned outward w.r.t. the mesh's winding-number solid.

    A sample's face normal is flipped when a step along it goes *into* the solid: when the
    absolute winding number rises by more than 0.5 over a step of 1e-4 of the diagonal each
    way (absolute, so a closed part modelled inside out counts as solid here). Parts whose
    faces point inward then get outward normals, while a consistently oriented input keeps its
    own. Where neither side is inside (open sheets, fins thinner than the step) the face's own
    normal is kept.

    Returns
    -------
    P, N : (n, 3) float64
        Positions and unit normals.
    flipped : float
        Share of samples whose normal was flipped, in ``[0, 1]``.
    """
    import igl

    V, F = _mesh(V, F)
    P, N = sample_surface(V, F, n, seed)
    step = 1e-4 * float(np.linalg.norm(V.max(axis=0) - V.min(axis=0)))
    w_front = np.asarray(igl.fast_winding_number(V, F, np.ascontiguousarray(P + step * N)))
    w_back = np.asarray(igl.fast_winding_number(V, F, np.ascontiguousarray(P - step * N)))
    flip = np.abs(w_front) - np.abs(w_back) > 0.5
    N = np.where(flip[:, None], -N, N)
    return P, N, float(flip.mean())


def _weld(V, F) -> tuple[Points, Faces]:
    """Merge vertices at exactly the same position (unwelded copies of one corner)."""
    V, F = _mesh(V, F)
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


def surface_report(V_in, F_in, V_out, F_out, n: int = 200_000, seed: int = 0) -> dict:
    """How true a result mesh is to its input, and how usable it is: one row of issue 9's table.

    Distances are in % of the input's bounding-box diagonal, angles in degrees.

    - ``chamfer_percent``: Chamfer-L1, the mean of the two directed mean distances, and
      ``hausdorff_in_out_percent`` / ``hausdorff_out_in_percent`` the directed maxima (in->out:
      what the result misses; out->in: what it adds, caps over holes included), from
      :func:`chamfer_hausdorff` with ``n`` samples a side.
    - ``normal_error_mean_deg`` / ``normal_error_p95_deg``: for ``n`` input samples, the angle
      between the sample's normal and the normal of the closest result face, as oriented (an
      inverted result gives 180). Input normals are first turned outward w.r.t. the input's
      winding-number solid (:func:`oriented_samples`; the share flipped is
      ``input_normals_flipped_percent``), so inconsistently oriented inputs are not penalised.
    - ``iou``: volume IoU of the winding-number solids (:func:`winding_inside`) of input and
      result on ``n`` uniform points of the input's box grown by 5 % a side.
    - ``watertight``, ``components``, ``self_intersections`` and ``faces`` of the result.

    Parameters
    ----------
    V_in, F_in : (n, 3) float, (m, 3) int
        The input mesh (any soup).
    V_out, F_out : (n', 3) float, (m', 3) int
        The result.
    n : int
        Samples per surface, and volume points for the IoU.
    seed : int

    Returns
    -------
    dict
        The keys above (floats, ints and bools).

    Example
    -------
    >>> from lipsdf_blender.core.inputs.primitives import icosphere
    >>> r = surface_report(*icosphere(1.0, 3), *icosphere(1.01, 3), n=5000)
    >>> round(r["iou"], 2), r["watertight"], r["self_intersections"]
    (0.97, True, 0)
    """
    V_in, F_in = _mesh(V_in, F_in)
    V_out, F_out = _mesh(V_out, F_out)
    diag = float(np.linalg.norm(V_in.max(axis=0) - V_in.min(axis=0)))
    ch = chamfer_hausdorff(V_in, F_in, V_out, F_out, n=n, seed=seed)
    P, N, flipped = oriented_samples(V_in, F_in, n, seed)
    N_out, _ = face_normals(V_out, F_out)
    _, fi = _point_mesh_distance(P, V_out, F_out)
    cos = np.clip(np.einsum("ij,ij->i", N, N_out[fi]), -1.0, 1.0)
    angle = np.degrees(np.arccos(cos))
    rng = np.random.default_rng(seed)
    lo, hi = grown_box(V_in)
    Q = lo + rng.random((n, 3)) * (hi - lo)
    return {
        "chamfer_percent": 100.0 * ch["chamfer_l1"] / diag,
        "hausdorff_in_out_percent": 100.0 * ch["a_to_b_max"] / diag,
        "hausdorff_out_in_percent": 100.0 * ch["b_to_a_max"] / diag,
        "normal_error_mean_deg": float(angle.mean()),
        "normal_error_p95_deg": float(np.percentile(angle, 95)),
        "input_normals_flipped_percent": 100.0 * flipped,
        "iou": volume_iou(winding_inside(V_in, F_in, Q), winding_inside(V_out, F_out, Q)),
        "watertight": is_watertight(F_out),
        "components": connected_components(F_out),
        "self_intersections": self_intersections(V_out, F_out),
        "faces": int(len(F_out)),
    }


def _segment_distance(P, A, B, chunk: int = 4096) -> np.ndarray:
    """Distance from each of ``P (k,3)`` to the nearest of segments ``A[i] B[i] (s,3)``."""
    AB = B - A
    L2 = np.maximum(np.einsum("ij,ij->i", AB, AB), 1e-300)
    out = np.empty(len(P))
    for s in range(0, len(P), chunk):
        X = P[s : s + chunk, None, :] - A[None]
        t = np.clip(np.einsum("kij,ij->ki", X, AB) / L2, 0.0, 1.0)
        d2 = np.einsum("kij,kij->ki", X - t[..., None] * AB, X - t[..., None] * AB)
        out[s : s + chunk] = np.sqrt(d2.min(axis=1))
    return out


def _sample_segments(A, B, n: int, seed: int) -> Points:
    length = np.linalg.norm(B - A, axis=1)
    rng = np.random.default_rng(seed)
    i = np.minimum(np.searchsorted(np.cumsum(length) / length.sum(), rng.random(n)), len(A) - 1)
    t = rng.random(n)[:, None]
    return A[i] + t * (B[i] - A[i])


def thickness_report(
    V_in, S_in, V_out, F_out, thickness: float, n: int = 200_000, seed: int = 0
) -> dict:
    """How well a solid result wraps an open sheet or a curve at half-thickness ``thickness``.

    The result's surface should lie at ``thickness`` from the input everywhere (a shell of
    half-thickness T around a sheet, a tube of radius T around a curve).

    - ``median_thickness`` and ``thickness_error_percent`` = (median - T) / T: the median
      distance from ``n`` result samples to the input; ``p95_thickness_error`` and
      ``p95_thickness_error_percent``: the 95th percentile of ``|distance - T|`` (object units,
      and % of T).
    - ``input_inside_percent``: share of ``n`` input samples inside the result (winding
      number > 0.5).
    - ``hausdorff_in_out`` (object units) and ``hausdorff_in_out_percent`` (% of the input's
      diagonal): the largest distance from the input (samples and vertices) to the result;
      ``hausdorff_bound``: T + 0.5 % of the diagonal, and ``within_bound`` whether it holds (a
      part of the outline that the result lost shows up here).
    - ``watertight``, ``components``, ``faces`` of the result.

    Parameters
    ----------
    V_in : (n, 3) float
    S_in : (m, 3) int or (m, 2) int
        The input's triangles (a sheet) or its polyline edges (a curve).
    V_out, F_out : (n', 3) float, (m', 3) int
        The closed result.
    thickness : float
        T, the half-thickness asked for, in object units.
    n : int
    seed : int
    """
    V_in = np.ascontiguousarray(V_in, dtype=np.float64)
    S_in = np.asarray(S_in, dtype=np.int64)
    V_out, F_out = _mesh(V_out, F_out)
    T = float(thickness)
    diag = float(np.linalg.norm(V_in.max(axis=0) - V_in.min(axis=0)))
    P_out, _ = sample_surface(V_out, F_out, n, seed)
    if S_in.shape[1] == 2:
        A, B = V_in[S_in[:, 0]], V_in[S_in[:, 1]]
        d = _segment_distance(P_out, A, B)
        P_in = np.vstack([_sample_segments(A, B, n, seed + 1), V_in[np.unique(S_in)]])
    else:
        d, _ = _point_mesh_distance(P_out, V_in, S_in)
        P_s, _ = sample_surface(V_in, S_in, n, seed + 1)
        P_in = np.vstack([P_s, V_in[np.unique(S_in)]])
    err = np.abs(d - T)
    d_in, _ = _point_mesh_distance(P_in, V_out, F_out)
    median = float(np.median(d))
    bound = T + 0.005 * diag
    return {
        "median_thickness": median,
        "thickness_error_percent": 100.0 * (median - T) / T,
        "p95_thickness_error": float(np.percentile(err, 95)),
        "p95_thickness_error_percent": 100.0 * float(np.percentile(err, 95)) / T,
        "input_inside_percent": 100.0 * float(winding_inside(V_out, F_out, P_in).mean()),
        "hausdorff_in_out": float(d_in.max()),
        "hausdorff_in_out_percent": 100.0 * float(d_in.max()) / diag,
        "hausdorff_bound": bound,
        "within_bound": bool(d_in.max() <= bound),
        "watertight": is_watertight(F_out),
        "components": connected_components(F_out),
        "faces": int(len(F_out)),
    }
