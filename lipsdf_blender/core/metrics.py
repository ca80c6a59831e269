"""Surface sampling, distances between meshes and topology checks, for tests and benchmarks.

All distances are in the meshes' own units. Mesh arguments are ``V (n,3) float`` and
``F (m,3) int``; nothing here needs a closed or manifold mesh except :func:`genus`.

Example
-------
>>> from lipsdf_blender.core.primitives import icosphere
>>> VA, FA = icosphere(1.0, 3)
>>> VB, FB = icosphere(1.01, 3)
>>> round(chamfer_hausdorff(VA, FA, VB, FB)["chamfer_l1"], 3)
0.01
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components as _cc

from .errors import BadInputError
from .types import Faces, Points


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


def connected_components(F) -> int:
    """Number of edge-connected pieces of the mesh (unreferenced vertices ignored)."""
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    if len(F) == 0:
        return 0
    used, inv = np.unique(F, return_inverse=True)
    Fi = inv.reshape(F.shape)
    e = _directed_edges(Fi)
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(used), len(used)))
    n, _ = _cc(A, directed=False)
    return int(n)


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
