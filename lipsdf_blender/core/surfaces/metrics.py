"""How close one surface is to another: sampling, Chamfer and Hausdorff distances, normals, IoU.

The batch measures its results with these, as do the tests and benchmarks; the topology the
engine itself checks (closedness, parts, genus) is :mod:`.topology`.

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

from ..errors import BadInputError
from ..types import Points
from .topology import as_mesh, face_normals


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
    V, F = as_mesh(V, F)
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


def point_mesh_distance(P, V, F) -> tuple[np.ndarray, np.ndarray]:
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
    VA, FA = as_mesh(VA, FA)
    VB, FB = as_mesh(VB, FB)
    PA, _ = sample_surface(VA, FA, n, seed)
    PB, _ = sample_surface(VB, FB, n, seed + 1)
    dab, _ = point_mesh_distance(PA, VB, FB)
    dba, _ = point_mesh_distance(PB, VA, FA)
    vab, _ = point_mesh_distance(VA[np.unique(FA)], VB, FB)
    vba, _ = point_mesh_distance(VB[np.unique(FB)], VA, FA)
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
    VA, FA = as_mesh(VA, FA)
    VB, FB = as_mesh(VB, FB)
    NA, _ = face_normals(VA, FA)
    NB, _ = face_normals(VB, FB)
    PA, nA = sample_surface(VA, FA, n, seed)
    PB, nB = sample_surface(VB, FB, n, seed + 1)
    _, fab = point_mesh_distance(PA, VB, FB)
    _, fba = point_mesh_distance(PB, VA, FA)
    ab = np.abs(np.einsum("ij,ij->i", nA, NB[fab])).mean()
    ba = np.abs(np.einsum("ij,ij->i", nB, NA[fba])).mean()
    return float(0.5 * (ab + ba))


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

    V, F = as_mesh(V, F)
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

    V, F = as_mesh(V, F)
    P, N = sample_surface(V, F, n, seed)
    step = 1e-4 * float(np.linalg.norm(V.max(axis=0) - V.min(axis=0)))
    w_front = np.asarray(igl.fast_winding_number(V, F, np.ascontiguousarray(P + step * N)))
    w_back = np.asarray(igl.fast_winding_number(V, F, np.ascontiguousarray(P - step * N)))
    flip = np.abs(w_front) - np.abs(w_back) > 0.5
    N = np.where(flip[:, None], -N, N)
    return P, N, float(flip.mean())
