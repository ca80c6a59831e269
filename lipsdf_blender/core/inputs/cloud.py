"""Point clouds made ready for labelling: normals used or estimated, oriented, and reported.

:func:`prepare_cloud` is the one place a point cloud's inside and outside are decided. It
returns the (possibly cleaned) points, outward unit normals, per-point areas for the fast
winding number, and a report of what it did, which training stores in the field's record
(``record["cloud"]``) and the CLI and the add-on print.

Example
-------
>>> from lipsdf_blender.core.inputs.primitives import torus_points
>>> c = prepare_cloud(torus_points(3000))
>>> c.report["normals"], len(c.points) == len(c.normals) == len(c.areas)
('estimated', True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from ..errors import BadInputError
from ..types import Points, Scalars
from .geometry import principal_extents
from .normals import estimate_normals, knn, knn_areas, point_areas

NORMALS_CHOICES = ("auto", "estimate")


@dataclass
class PreparedCloud:
    """A point cloud ready for the winding number (all in the frame it was given in).

    Attributes
    ----------
    points : (n, 3) float64
    normals : (n, 3) float64, unit, outward
    areas : (n,) float64
    report : dict
        ``normals``: ``"input"`` (the file's, sign-checked) or ``"estimated"``;
        ``points``: points given; ``used``: points kept; ``flipped``: normals whose sign was
        changed; ``outliers``: points dropped as outliers; ``merged``: the cells a dense cloud
        was averaged into (0: not averaged); ``noise``: the noise level used
        (same units as the points; 0 for clean); ``seconds``.
    """

    points: Points
    normals: Points
    areas: Scalars
    report: dict = field(default_factory=dict)
    _tree: object = None
    _spacing: object = None

    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.points)
        return self._tree

    def spacing(self) -> Scalars:
        """Each point's local spacing: the distance to its 4th neighbour."""
        if self._spacing is None:
            k = min(5, len(self.points))
            self._spacing = self.tree().query(self.points, k=k, workers=-1)[0][:, -1]
        return self._spacing


def prepare_cloud(
    P, N=None, normals: str = "auto", noise: float | None = None, cell: float = 0.0
) -> PreparedCloud:
    """Outward normals and areas for a point cloud, after outliers and noise are dealt with.

    0. Density: a cloud denser than ``cell`` (spacing below half of it) is first averaged per
       cell of that side (:func:`merge_cells`): a scan of millions of points carries nothing
       a surface extracted on a grid of that size can show, and every later step costs in
       proportion to the points. The noise is measured before (it is the input's).
    1. Outliers: points whose 8th neighbour is far beyond what is usual for the cloud
       (:func:`outlier_mask`), and then points farther than ``max(3 sigma, 2 spacing)`` from
       the plane of their neighbours (:func:`off_surface_mask`), are dropped.
    1b. Shape: a cloud whose points lie on one line or in one plane (within its noise)
       encloses nothing and is refused (:func:`check_encloses`).
    2. Noise: estimated (:func:`estimate_noise`) unless given. A cloud noisier than half its
       spacing is averaged in cells of 1.5 sigma and each point projected onto the plane of its
       48 nearest (:func:`denoise`, twice): noise that would turn a k-nearest-neighbour normal
       by tens of degrees shrinks several times, and the cloud gets smaller.
    3. Normals: the input's (averaged alongside the points) or estimated and oriented
       (:func:`normals.estimate_normals`); the input's are checked part by part with the
       winding number like estimated ones and flipped where a part comes out inside-out.

    Parameters
    ----------
    P : (n, 3) float
    N : (n, 3) float, optional
        Normals that came with the points (a scanner's, a file's).
    normals : {"auto", "estimate"}
        ``auto``: use ``N`` when given, else estimate; ``estimate``: ignore ``N``.
    noise : float, optional
        The points' noise (standard deviation, same units); ``None``: estimated.

    Returns
    -------
    PreparedCloud
    """
    if normals not in NORMALS_CHOICES:
        raise BadInputError(f"normals must be one of {', '.join(NORMALS_CHOICES)}; got {normals!r}")
    if noise is not None and not (np.isfinite(noise) and noise >= 0):
        raise BadInputError(f"the noise level must be a non-negative number; got {noise!r}")
    t0 = time.perf_counter()
    P = np.ascontiguousarray(P, dtype=np.float64)
    n_in = len(P)
    use_input = N is not None and normals == "auto"
    if use_input:
        N = np.asarray(N, dtype=np.float64)
        N = N / np.maximum(np.linalg.norm(N, axis=1, keepdims=True), 1e-12)
    raw_sigma, merged = None, 0
    if cell > 0 and len(P) > MERGE_MIN:
        raw_sigma, raw_spacing = estimate_noise(P)
        if raw_spacing < 0.5 * cell:
            merged = len(P)
            P, N = merge_cells(P, N if use_input else None, cell, by_normal=True)
    n_before = len(P)
    keep = outlier_mask(P)
    if keep.sum() >= 8 and not keep.all():
        P = P[keep]
        N = N[keep] if use_input else None
    if raw_sigma is not None and not merged and len(P) == n_before:
        sigma, spacing = raw_sigma, raw_spacing  # the same points: the same estimate
    else:
        sigma, spacing = estimate_noise(P)
    if merged:
        sigma = raw_sigma  # the input's noise, not what the averaging left of it
    if noise is not None:
        sigma = float(noise)
    off = off_surface_mask(P, max(3.0 * sigma, 2.0 * spacing))
    if off.any() and (~off).sum() >= 8:
        P = P[~off]
        N = N[~off] if use_input else None
    n_kept = len(P)
    check_encloses(P, sigma)
    if sigma > 0.5 * spacing:
        P, N = denoise(P, sigma, N)
    flipped = 0
    # one neighbour search for the normals and the areas
    neighbours = knn(P, 16) if len(P) > 16 else None
    if use_input:
        N, flipped = check_parts(P, N)
    else:
        stats: dict = {}
        N = estimate_normals(P, stats=stats, neighbours=neighbours)
        flipped = stats["flipped"]
    tree = None
    if merged:
        # About one point per cell: the density is even, and areas from the neighbours'
        # distances do as well as tangent-plane Voronoi cells, at a tenth of the cost.
        tree = cKDTree(P)  # kept: labelling asks the prepared cloud for its tree again
        A = knn_areas((knn(P, 16) if neighbours is None else neighbours)[0])
    else:
        A = point_areas(P, N, neighbours=neighbours)
    report = {
        "normals": "input" if use_input else "estimated",
        "points": n_in,
        "used": len(P),
        "flipped": int(flipped),
        "outliers": int(n_before - n_kept),
        "merged": n_before if merged else 0,
        "noise": float(sigma),
        "noise_given": noise is not None,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return PreparedCloud(P, np.ascontiguousarray(N), np.ascontiguousarray(A), report, tree)


#: A cloud thinner than this share of its diagonal, across its flattest direction, is flat.
FLAT = 1e-3
#: ... or thinner than this many times its noise (a scan of a plane is as thick as its noise),
FLAT_NOISE = 6.0
#: ... when its points across that direction are spread like noise: their kurtosis is at
#: least this (3 for Gaussian noise; about 1 for the two sides of a thin plate).
NOISE_KURTOSIS = 2.6


def check_encloses(P, sigma: float = 0.0) -> None:
    """Refuse a cloud that cannot enclose a volume: all on one line, or all in one plane.

    The spread across the flattest principal axis (between the 1st and 99th percentiles) is
    compared with :data:`FLAT` of the diagonal and, when the points are spread across it as
    noise is (one bump, not two sheets), with :data:`FLAT_NOISE` times the noise ``sigma``: a
    scanned plane is as thick as its noise (about 4.7 sigma between those percentiles),
    whereas the two sides of a thin plate lie apart (and may look like noise to
    :func:`estimate_noise` when its neighbourhoods reach across). Without this, the closure
    of a flat patch is a slab reaching far below it, where nothing was scanned.

    Raises
    ------
    BadInputError
    """
    P = np.asarray(P, dtype=np.float64)
    ext, axes = principal_extents(P, trim=0.01, axes=True)
    diag = float(np.linalg.norm(np.ptp(P, axis=0)))
    if ext[1] <= FLAT * diag:
        raise BadInputError(
            f"The point cloud's {len(P)} points lie on one line (within 0.1 % of its size), "
            "so they span no surface and enclose nothing. Give points spread over the "
            "object's surface, or train in unsigned mode for a thin tube around them."
        )
    flat = ext[2] <= FLAT * diag
    if not flat and ext[2] <= FLAT_NOISE * sigma:
        z = (P - P.mean(axis=0)) @ axes[:, 2]
        flat = float(np.mean(z**4)) >= NOISE_KURTOSIS * float(np.mean(z**2)) ** 2
    if flat:
        raise BadInputError(
            f"The point cloud is flat (its {len(P)} points lie in one plane, up to their "
            "noise), so it encloses no volume and has no inside. Train it in unsigned mode "
            "instead (a thin shell around the points), or add points on the object's other "
            "sides."
        )


def outlier_mask(P, k: int = 8, factor: float = 4.0) -> np.ndarray:
    """``True`` for points that belong to the cloud, ``False`` for stray ones.

    A point is stray when the distance to its ``k``-th neighbour exceeds ``factor`` times the
    cloud's median of that distance: far more room around it than around a typical point.
    Random points in the box around a sampled surface stand out by tens of times; noise
    within a few spacings of the surface does not.
    """
    P = np.asarray(P, dtype=np.float64)
    if len(P) <= k:
        return np.ones(len(P), dtype=bool)
    d, _ = cKDTree(P).query(P, k=k + 1, workers=-1)
    dk = d[:, -1]
    return dk <= factor * np.median(dk)


def off_surface_mask(P, tolerance: float, k: int = 16) -> np.ndarray:
    """``True`` for points farther than ``tolerance`` from the plane of their ``k`` neighbours.

    Catches the stray points that :func:`outlier_mask` lets through because they happen to
    lie near the surface, within a few spacings of it but well off it.
    """
    P = np.asarray(P, dtype=np.float64)
    if len(P) <= k:
        return np.zeros(len(P), dtype=bool)
    _, idx = cKDTree(P).query(P, k=k + 1, workers=-1)
    X = P[idx[:, 1:]]
    mu = X.mean(axis=1)
    X = X - mu[:, None]
    _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", X, X))
    return np.abs(np.einsum("ni,ni->n", P - mu, vecs[:, :, 0])) > tolerance


def estimate_noise(P, n_query: int = 1000, k_max: int = 2048, seed: int = 0):
    """The cloud's noise (standard deviation across the surface) and its spacing.

    For ``n_query`` random points the smallest eigenvalue of the covariance of their ``k``
    nearest neighbours is measured at ``k = 16 ... 2048`` (medians over the points). On a
    smooth surface it is ``sigma^2 + a r^4`` (``r``: neighbourhood radius; the second term is
    curvature), so a least-squares fit over the scales where ``r >= 4 sigma`` (neighbourhoods
    wide enough not to cut the noise) and ``r <= 10 %`` of the diagonal (local enough for the
    curvature term) gives sigma. With fewer than three such scales (a sparse cloud) the noise
    cannot be told from the shape, and 0 is returned; likewise when the 16 nearest spread
    across the surface by less than a fifth of the fitted sigma (nearby parallel sheets, not
    noise).

    Returns
    -------
    sigma : float
        Same units as ``P``.
    spacing : float
        Typical distance between neighbouring points (``pi r_8^2 = 8 spacing^2``).
    """
    P = np.asarray(P, dtype=np.float64)
    k_max = min(k_max, len(P))
    rng = np.random.default_rng(seed)
    sel = rng.choice(len(P), min(n_query, len(P)), replace=False)
    d, idx = cKDTree(P).query(P[sel], k=k_max, workers=-1)
    spacing = float(np.median(d[:, min(7, k_max - 1)]) / np.sqrt(8.0 / np.pi))
    diag = float(np.linalg.norm(P.max(0) - P.min(0)))
    lam, rk = [], []
    for k in (16, 32, 64, 128, 256, 512, 1024, 2048):
        if k > k_max:
            break
        r = float(np.median(d[:, k - 1]))
        if r > 0.1 * diag:
            break
        X = P[idx[:, :k]]
        X = X - X.mean(axis=1, keepdims=True)
        lam.append(float(np.median(np.linalg.eigvalsh(np.einsum("nki,nkj->nij", X, X) / k)[:, 0])))
        rk.append(r)
    if len(rk) < 3:
        return 0.0, spacing
    lam, rk = np.asarray(lam), np.asarray(rk)
    s2 = 0.0
    for _ in range(5):
        use = rk >= 4.0 * np.sqrt(s2)
        if use.sum() < 3:
            use[-3:] = True
        A = np.stack([np.ones(int(use.sum())), rk[use] ** 4], axis=1)
        (s2, _), *_ = np.linalg.lstsq(A, lam[use], rcond=None)
        s2 = max(float(s2), 0.0)
    sigma = float(np.sqrt(s2))
    # Noise shows at every scale: even the 16 nearest spread across the surface by a good
    # part of sigma. Sheets a little apart (the two sides of a thin plate) only show once a
    # neighbourhood reaches across, and are shape, not noise.
    if np.sqrt(lam[0]) < 0.2 * sigma:
        return 0.0, spacing
    return sigma, spacing


def denoise(P, sigma: float, N=None, k: int = 48, rounds: int = 2):
    """Average a noisy cloud in cells of ``1.5 sigma``, then project onto local planes.

    Parameters
    ----------
    P : (n, 3) float
    sigma : float
        Noise level, same units.
    N : (n, 3) float, optional
        Normals to average alongside the points (renormalised).
    k : int
        Neighbours of each plane fit (Gaussian weights of width 0.6 times their radius).
    rounds : int

    Returns
    -------
    P : (m, 3) float64, m <= n
    N : (m, 3) float64 or None
    """
    Q, N = merge_cells(P, N, 1.5 * sigma)
    k = min(k, len(Q))
    for _ in range(rounds if k >= 8 else 0):
        d, idx = cKDTree(Q).query(Q, k=k, workers=-1)
        w = np.exp(-((d / np.maximum(0.6 * d[:, -1:], 1e-12)) ** 2))
        nb = Q[idx]
        mu = np.einsum("nk,nki->ni", w, nb) / w.sum(axis=1, keepdims=True)
        X = nb - mu[:, None]
        _, vecs = np.linalg.eigh(np.einsum("nk,nki,nkj->nij", w, X, X))
        n = vecs[:, :, 0]
        Q = Q - np.einsum("ni,ni->n", Q - mu, n)[:, None] * n
    return Q, N


#: Clouds of at most this many points are never averaged per cell (:func:`prepare_cloud`).
MERGE_MIN = 50_000


def merge_cells(P, N=None, cell: float = 1.0, by_normal: bool = False):
    """The mean point (and mean normal, renormalised) of each cube of side ``cell``.

    Parameters
    ----------
    P : (n, 3) float
    N : (n, 3) float, optional
    cell : float
        Same units as ``P``.
    by_normal : bool
        With normals: points of one cube whose normals face different ways (by the axis and
        sign of the normal's largest component) are averaged apart, so the two sides of a
        part thinner than the cell stay two sheets.

    Returns
    -------
    P : (m, 3) float64, m <= n
    N : (m, 3) float64 or None
    """
    P = np.asarray(P, dtype=np.float64)
    ijk = np.floor((P - P.min(0)) / cell).astype(np.int64)
    if N is not None:
        N = np.asarray(N, dtype=np.float64)
        if by_normal:
            axis = np.argmax(np.abs(N), axis=1)
            side = 2 * axis + (N[np.arange(len(N)), axis] > 0)
            ijk = np.concatenate([ijk, side[:, None]], axis=1)
    dims = ijk.max(0) + 1
    if float(np.prod(dims.astype(np.float64))) < 2.0**62:  # one int64 key per cube
        key = np.ravel_multi_index(ijk.T, dims)
        _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    else:
        _, inv, cnt = np.unique(ijk, axis=0, return_inverse=True, return_counts=True)
        inv = inv.ravel()
    Q = np.stack([np.bincount(inv, P[:, j], len(cnt)) for j in range(3)], 1) / cnt[:, None]
    if N is not None:
        M = np.stack([np.bincount(inv, N[:, j], len(cnt)) for j in range(3)], 1)
        N = M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-12)
    return Q, N


def check_parts(P, N):
    """Given normals, each connected part flipped if the winding number finds it inside-out.

    Returns
    -------
    N : (n, 3) float64
    flipped : int
        Normals whose sign was changed.
    """
    from scipy.sparse.csgraph import connected_components

    from .normals import orientation_score

    N = np.array(N, dtype=np.float64)
    if len(P) < 20:
        return N, 0
    dist, idx = knn(P, 8)
    rows = np.repeat(np.arange(len(P)), idx.shape[1])
    G = sp.coo_matrix((np.ones(len(rows)), (rows, idx.ravel())), shape=(len(P),) * 2)
    n_comp, labels = connected_components(G, directed=False)
    A = knn_areas(dist)
    flipped = 0
    for c in range(n_comp):
        members = np.flatnonzero(labels == c)
        if len(members) < max(20, len(P) // 1000):
            continue
        if orientation_score(P[members], N[members], A[members]) < -0.1:
            N[members] *= -1.0
            flipped += len(members)
    return N, flipped


#: Winding numbers within this of 1/2, far from the points, are settled by :func:`apss_distance`.
UNSURE = 0.3


def apss_distance(P, N, Q, tree: cKDTree | None = None, k: int = 192, gradient: bool = False):
    """Signed distance (about) to the algebraic sphere fitted to the points nearest each query.

    Algebraic point set surfaces (Guennebaud & Gross 2007): at ``q``, the sphere (or plane)
    ``s(x) = u0 + u . x + u4 |x|^2`` whose gradient best matches the normals of the ``k``
    nearest points, weighted by ``(1 - (d/d_k)^2)^4``. Across a hole it continues the
    curvature of the rim instead of capping it flat, which is how a scan's missing base or
    side is closed: the winding number there is near 1/2 and says little.

    Parameters
    ----------
    P, N : (n, 3) float
        Points and outward unit normals.
    Q : (q, 3) float
    tree : cKDTree of ``P``, optional
    k : int

    gradient : bool
        Also return the unit gradient ``(q, 3)`` (outward).

    Returns
    -------
    (q,) float64
        Negative inside, positive outside; ``s / |grad s|``, about the distance near the sphere.
    """
    P = np.asarray(P, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if len(Q) == 0:
        return (np.zeros(0), np.zeros((0, 3))) if gradient else np.zeros(0)
    tree = tree if tree is not None else cKDTree(P)
    k = min(k, len(P))
    d, idx = tree.query(Q, k=k, workers=-1)
    w = np.clip(1.0 - (d / np.maximum(d[:, -1:], 1e-12)) ** 2, 0.0, None) ** 4 + 1e-12
    w /= w.sum(axis=1, keepdims=True)
    X = P[idx]
    M = np.asarray(N, dtype=np.float64)[idx]
    mean_p = np.einsum("qk,qkd->qd", w, X)
    X -= mean_p[:, None]  # centred: the fit is then u0 = -u4 <|x|^2>, u = <n>
    u = np.einsum("qk,qkd->qd", w, M)
    pn = np.einsum("qk,qk->q", w, np.einsum("qkd,qkd->qk", X, M))
    pp = np.einsum("qk,qk->q", w, np.einsum("qkd,qkd->qk", X, X))
    u4 = 0.5 * pn / np.maximum(pp, 1e-18)
    y = Q - mean_p
    s = -u4 * pp + np.einsum("qd,qd->q", u, y) + u4 * np.einsum("qd,qd->q", y, y)
    G = u + 2.0 * u4[:, None] * y
    norm = np.maximum(np.linalg.norm(G, axis=1), 1e-12)
    return (s / norm, G / norm[:, None]) if gradient else s / norm


def closure_samples(c: PreparedCloud, Q, sigmas, rng) -> tuple[np.ndarray, np.ndarray]:
    """Training points near the fitted-sphere surface that closes a hole, labelled by it.

    The queries ``Q`` (points where :func:`settle_unsure` used the sphere) are moved onto
    that surface along its gradient and spread by each noise width in ``sigmas``, as the
    points near the cloud are: so the field learns the closure as sharply as the rest.

    Returns
    -------
    points : (m, 3) float64
    inside : (m,) bool
    """
    if len(Q) == 0:
        return np.zeros((0, 3)), np.zeros(0, dtype=bool)
    tree = c.tree()
    g, n = apss_distance(c.points, c.normals, Q, tree, gradient=True)
    foot = Q - g[:, None] * n
    X = np.concatenate([foot + rng.normal(size=foot.shape) * s for s in sigmas])
    far = tree.query(X, k=1, workers=-1)[0] > 2.0 * np.median(c.spacing())
    X = X[far]
    return X, apss_distance(c.points, c.normals, X, tree) < 0


def settle_unsure(c: PreparedCloud, Q, W, settled: list | None = None) -> np.ndarray:
    """Inside (True) or outside for queries ``Q`` with cloud winding numbers ``W``.

    ``W > 1/2`` decides, except where it is within :data:`UNSURE` of 1/2 and the query is more
    than two spacings from every point (a hole, a part never scanned): there the sign of
    :func:`apss_distance` decides. Next to the points the winding number is kept, since a
    sphere fitted to the two sides of a thin part means nothing. The queries settled so are
    appended to ``settled`` when given.
    """
    inside = np.asarray(W) > 0.5
    unsure = np.flatnonzero(np.abs(np.asarray(W) - 0.5) < UNSURE)
    if len(unsure) == 0 or len(c.points) < 16:
        return inside
    tree = c.tree()
    d, j = tree.query(Q[unsure], k=1, workers=-1)
    far = unsure[d > 2.0 * c.spacing()[j]]
    if len(far):
        inside[far] = apss_distance(c.points, c.normals, Q[far], tree) < 0
        if settled is not None:
            settled.append(Q[far])
    return inside
