"""Queries on any distance field: values, gradients, projection, surface samples, spacing.

All functions take and return float64 numpy arrays in the field's own units and evaluate the
field in float32 batches on the field's device (see :func:`field_device`). They work on any
object following the :class:`~.sdf.DistanceField` protocol: trained fields, CSG
combinations and the exact test fields alike.

Example
-------
>>> from lipsdf_blender.core.fields.sdf import SphereField
>>> P = sample_surface_points(SphereField(radius=2.0), 1000)
>>> d, g = value_and_gradient(SphereField(radius=2.0), P)  # d ~ 0, |g| ~ 1
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..errors import BadInputError, CancelledError
from ..types import Points, Scalars

DEFAULT_BATCH = 65536
#: Surface candidates drawn per point returned, before thinning.
OVERSAMPLE = 4
#: At most this fraction of the points is dropped per thinning round. Dropping every mutual
#: pair's member at once (about a third of the points) acts like random thinning and leaves
#: regional counts as noisy as the candidates'; a tenth keeps face counts on a cube within
#: about 1.5 % (std) of their share at a few kd-tree rounds more.
THIN_FRACTION = 0.1


def field_device(field: object) -> torch.device:
    """The torch device a field is evaluated on.

    Uses the field's ``device`` attribute if it has one, else the device of its first
    parameter if it is a ``torch.nn.Module``, else the CPU.

    Parameters
    ----------
    field : DistanceField

    Returns
    -------
    torch.device
    """
    device = getattr(field, "device", None)
    if device is not None:
        return torch.device(device)
    if isinstance(field, torch.nn.Module):
        for p in field.parameters():
            return p.device
    return torch.device("cpu")


def check_points(P, what: str = "points") -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[1] != 3:
        raise BadInputError(f"{what} must be an (n, 3) array, got shape {P.shape}")
    if not np.all(np.isfinite(P)):
        raise BadInputError(f"{what} contain NaN or infinite coordinates")
    return P


def _check_batch(batch_size: int) -> int:
    batch_size = int(batch_size)
    if batch_size < 1:
        raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
    return batch_size


def evaluate(field, P: Points, batch_size: int = DEFAULT_BATCH) -> Scalars:
    """Field values at points, without gradients.

    Parameters
    ----------
    field : DistanceField
    P : (n, 3) float array
        Query points in the field's units.
    batch_size : int
        Points per forward pass.

    Returns
    -------
    (n,) float64
        Signed distance bounds, in the field's units (negative inside).
    """
    P = check_points(P)
    batch_size = _check_batch(batch_size)
    device = field_device(field)
    out = np.empty(len(P), dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(P), batch_size):
            x = torch.as_tensor(P[start : start + batch_size], dtype=torch.float32, device=device)
            out[start : start + len(x)] = field(x).reshape(-1).double().cpu().numpy()
    return out


def value_and_gradient(field, P: Points, batch_size: int = DEFAULT_BATCH) -> tuple[Scalars, Points]:
    """Field values and their gradients at points, by automatic differentiation.

    Parameters
    ----------
    field : DistanceField
    P : (n, 3) float array
        Query points in the field's units.
    batch_size : int
        Points per forward and backward pass.

    Returns
    -------
    values : (n,) float64
        Field values in the field's units.
    gradients : (n, 3) float64
        Gradients (unitless); norm at most 1 for a 1-Lipschitz field. Zero where the field
        does not depend on the point.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import SphereField
    >>> d, g = value_and_gradient(SphereField(), np.array([[2.0, 0.0, 0.0]]))
    >>> d, g  # (array([1.]), array([[1., 0., 0.]]))
    """
    P = check_points(P)
    batch_size = _check_batch(batch_size)
    device = field_device(field)
    values = np.empty(len(P), dtype=np.float64)
    grads = np.zeros((len(P), 3), dtype=np.float64)
    for start in range(0, len(P), batch_size):
        x = torch.tensor(
            P[start : start + batch_size], dtype=torch.float32, device=device, requires_grad=True
        )
        with torch.enable_grad():
            f = field(x).reshape(-1)
            if f.requires_grad:
                # grad with respect to x only, so a trained field's parameters collect nothing.
                (g,) = torch.autograd.grad(f.sum(), x, allow_unused=True)
            else:
                g = None
        stop = start + len(x)
        values[start:stop] = f.detach().double().cpu().numpy()
        if g is not None:
            grads[start:stop] = g.double().cpu().numpy()
    return values, grads


def project(
    field,
    P: Points,
    level: float = 0.0,
    iterations: int = 10,
    tol: float | None = None,
    batch_size: int = DEFAULT_BATCH,
) -> Points:
    """Move points onto the level set ``f = level`` by Newton steps along the gradient.

    Each step is ``x <- x - (f(x) - level) g / |g|^2``; for an exact distance field one step
    lands on the surface (up to float32 rounding), for a trained field a few do. Points where
    the gradient vanishes (``|g| < 1e-6``, e.g. on a medial axis) are left where they are.

    Parameters
    ----------
    field : DistanceField
    P : (n, 3) float array
        Start points, in the field's units.
    level : float
        Target level, in the field's units (``0`` is the surface, ``> 0`` an outward offset).
    iterations : int
        Maximum number of Newton steps.
    tol : float, optional
        Stop moving a point once ``|f - level| <= tol``. Default ``1e-6`` times the largest
        side of the field's bounds (at least ``1e-6``), about what float32 evaluation resolves.
    batch_size : int
        Points per evaluation.

    Returns
    -------
    (n, 3) float64
        Projected points. Check ``evaluate(field, Q) - level`` if convergence matters: a point
        that started near a medial axis may not have converged.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import SphereField
    >>> project(SphereField(radius=1.0), np.array([[3.0, 0.0, 0.0]]))  # [[1., 0., 0.]]
    """
    X = check_points(P).copy()
    level = float(level)
    if tol is None:
        tol = _default_tol(field)
    active = np.arange(len(X))
    for _ in range(int(iterations)):
        if len(active) == 0:
            break
        f, g = value_and_gradient(field, X[active], batch_size)
        r = f - level
        g2 = np.einsum("ij,ij->i", g, g)
        moving = (np.abs(r) > tol) & (g2 > 1e-12)
        active = active[moving]
        X[active] -= (r[moving] / g2[moving])[:, None] * g[moving]
    return X


def _default_tol(field) -> float:
    lo, hi = field.bounds()
    return 1e-6 * max(1.0, float(np.max(np.asarray(hi) - np.asarray(lo))))


def project_safe(
    field,
    P: Points,
    level: float = 0.0,
    iterations: int = 100,
    tol: float | None = None,
    batch_size: int = DEFAULT_BATCH,
    cancel=None,
) -> tuple[Points, np.ndarray]:
    """Move points onto the level set ``f = level`` by steps that never cross it.

    Each step is ``x <- x - (f(x) - level) g / |g|``, a move of exactly ``|f(x) - level|``
    along the unit gradient. The field is 1-Lipschitz (``|grad f| <= 1``), so within the ball
    of radius ``|f(x) - level|`` around ``x`` the field stays on the same side of ``level``:
    the ball holds no point of the level set, and a step of that length never overshoots it.
    A point that starts outside (``f > level``) stays outside on every iterate, and converges
    from that side. On an exact distance field one step lands; on a trained field, whose slope
    is a little below 1, the residual shrinks by about ``1 - |g|`` per step. :func:`project`
    (Newton steps ``|f| / |g|^2``) is faster but may step across the level set.

    Parameters
    ----------
    field : DistanceField
    P : (n, 3) float array
        Start points, in the field's units.
    level : float
        Target level, in the field's units.
    iterations : int
        Maximum number of steps.
    tol : float, optional
        A point has converged once ``|f - level| <= tol``. Default as :func:`project`:
        ``1e-6`` times the largest side of the field's bounds (at least ``1e-6``).
    batch_size : int
        Points per evaluation.
    cancel : callable ``() -> bool``, optional
        Polled once per step; returning ``True`` raises :class:`CancelledError`.

    Returns
    -------
    Q : (n, 3) float64
        The points after the steps, in the field's units.
    converged : (n,) bool
        ``|f(Q) - level| <= tol``. Points where the gradient vanishes (``|g| < 1e-6``, e.g. on
        a medial axis) stop there and count as not converged, as do points still moving
        after ``iterations`` steps.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import SphereField
    >>> Q, ok = project_safe(SphereField(radius=1.0), np.array([[3.0, 0.0, 0.0]]))
    >>> Q, ok  # [[1., 0., 0.]], [True]
    """
    X = check_points(P).copy()
    level = float(level)
    iterations = int(iterations)
    if iterations < 0:
        raise BadInputError(f"iterations must be 0 or more, got {iterations}")
    tol = _default_tol(field) if tol is None else float(tol)
    converged = np.zeros(len(X), dtype=bool)
    active = np.arange(len(X))
    for step in range(iterations + 1):
        if len(active) == 0:
            break
        if cancel is not None and cancel():
            raise CancelledError("the projection was cancelled")
        f, g = value_and_gradient(field, X[active], batch_size)
        r = f - level
        done = np.abs(r) <= tol
        converged[active[done]] = True
        gnorm = np.linalg.norm(g, axis=1)
        moving = ~done & (gnorm >= 1e-6)
        if step == iterations:
            break  # the last evaluation only checks the final positions
        active = active[moving]
        X[active] -= (r[moving] / gnorm[moving])[:, None] * g[moving]
    return X, converged


def spacing(P: Points) -> dict[str, float]:
    """How evenly points are spread: statistics of their nearest-neighbour distances.

    Parameters
    ----------
    P : (n, 3) float array
        Points, any units.

    Returns
    -------
    dict
        ``mean`` and ``min`` nearest-neighbour distance (the points' units) and ``cv``, the
        coefficient of variation ``std / mean`` (unitless). A Poisson-disk-like set has a low
        ``cv`` (about 0.1 to 0.2) and ``min / mean`` well above 0; uniform random points on a
        surface have ``cv`` about 0.5 and ``min`` near 0. All ``nan`` for fewer than 2 points.

    Examples
    --------
    >>> spacing(np.array([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]]))  # mean 4/3, min 1
    """
    P = check_points(P)
    if len(P) < 2:
        return {"mean": float("nan"), "min": float("nan"), "cv": float("nan")}
    d = cKDTree(P).query(P, k=2)[0][:, 1]
    mean = float(d.mean())
    cv = float(d.std() / mean) if mean > 0 else float("nan")
    return {"mean": mean, "min": float(d.min()), "cv": cv}


def _thin(X: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` of the points ``X`` spread as evenly as possible.

    A parallel form of sample elimination (Yuksel 2015): each round finds the mutual nearest
    neighbour pairs and drops one point of the closest of them (at most ``THIN_FRACTION`` of
    the points), preferring the member with the nearer second neighbour. Crowded regions lose
    points first, so the density evens out and the result has Poisson-disk-like spacing;
    every round removes at least the globally closest pair's member, so it ends. The points
    must be distinct, or "the nearest neighbour other than itself" is ambiguous.
    """
    keep = np.arange(len(X))
    while len(keep) > n:
        k = min(3, len(keep))
        d, idx = cKDTree(X[keep]).query(X[keep], k=k)
        nn, dn = idx[:, 1], d[:, 1]
        crowd = d[:, 2] if k == 3 else dn
        i = np.arange(len(keep))
        mutual = nn[nn] == i
        # Of each mutual pair (i, j) drop the member with the nearer second neighbour, ties
        # going to the larger index, so exactly one member of each pair is chosen.
        j = nn
        drop_i = mutual & ((crowd < crowd[j]) | ((crowd == crowd[j]) & (i > j)))
        candidates = np.flatnonzero(drop_i)
        if len(candidates) == 0:  # cannot happen (the closest pair is mutual); stay finite
            candidates = np.argsort(dn, kind="stable")[:1]
        need = min(len(keep) - n, max(1, int(THIN_FRACTION * len(keep))))
        if len(candidates) > need:
            candidates = candidates[np.argsort(dn[candidates], kind="stable")[:need]]
        keep = np.delete(keep, candidates)
    return keep


def sample_surface_points(
    field,
    n: int,
    level: float = 0.0,
    seed: int = 0,
    resolution: int = 64,
    batch_size: int = DEFAULT_BATCH,
) -> Points:
    """Evenly spread points on the level set ``f = level``.

    The bounds box (grown by ``max(level, 0)``) is cut into cubic cells of side
    ``h = (largest side) / resolution``; cells that cannot meet a thin shell
    ``|f - level| < h/4`` around the level set are skipped (the field is 1-Lipschitz, so a cell
    whose centre has ``|f - level| > sqrt(3)/2 h + h/4`` cannot). Points drawn uniformly in the
    kept cells and inside the shell are uniform in the shell's volume; keeping each with
    probability ``|grad f|`` undoes the thickening of the shell where the field is slower than
    a true distance, so they are uniform in area. They are projected onto the level set and
    thinned from about ``4n`` to ``n`` by :func:`_thin`, which evens out what is left of the
    density variation and spaces the points like a Poisson-disk set.

    Parameters
    ----------
    field : DistanceField
    n : int
        Number of points wanted.
    level : float
        Level to sample, in the field's units (``0`` is the surface).
    seed : int
        Seed of the random generator; the same seed gives the same points.
    resolution : int
        Cells along the largest side of the bounds; raise it if thin parts are missed.
    batch_size : int
        Points per evaluation.

    Returns
    -------
    (n, 3) float64
        Points on the level set, in the field's units.

    Raises
    ------
    BadInputError
        If the level set is empty (or too small to be found at this resolution), or ``n`` or
        ``resolution`` is not positive.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import BoxField
    >>> P = sample_surface_points(BoxField(half_size=(1, 1, 1)), 600)  # ~100 per face
    """
    n = int(n)
    resolution = int(resolution)
    if n < 1:
        raise BadInputError(f"the number of surface points must be at least 1, got {n}")
    if resolution < 2:
        raise BadInputError(f"the sampling resolution must be at least 2, got {resolution}")
    level = float(level)
    rng = np.random.default_rng(seed)

    lo, hi = (np.asarray(b, dtype=np.float64).reshape(3) for b in field.bounds())
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
        raise BadInputError(f"the field has unusable bounds {lo} .. {hi}")
    extent = float(np.max(hi - lo))
    h = max(extent, 1e-9) / resolution
    shell = 0.25 * h
    grow = max(level, 0.0) + h
    lo, hi = lo - grow, hi + grow
    dims = np.maximum(np.ceil((hi - lo) / h).astype(np.int64), 1)
    lo = 0.5 * (lo + hi) - 0.5 * h * dims  # centre the grid on the box

    # Cell culling by the Lipschitz bound, one z-slab at a time to keep memory flat.
    ii, jj = np.meshgrid(np.arange(dims[0]), np.arange(dims[1]), indexing="ij")
    slab = np.stack([ii.ravel(), jj.ravel()], axis=1)
    reach = 0.5 * np.sqrt(3.0) * h + shell
    kept = []
    for k in range(dims[2]):
        cells = np.column_stack([slab, np.full(len(slab), k)])
        f = evaluate(field, lo + (cells + 0.5) * h, batch_size)
        kept.append(cells[np.abs(f - level) <= reach])
    cells = np.concatenate(kept)
    if len(cells) == 0:
        raise BadInputError(
            f"the level set f = {level:g} is empty: the field never reaches that value inside "
            "its bounds"
        )

    target = OVERSAMPLE * n
    # For a roughly planar surface the shell fills about a quarter of the kept cells; the
    # first round's acceptance rate then sizes the rest.
    rate = 0.25
    found: list[np.ndarray] = []
    count = 0
    residual_tol = max(1e-3 * h, 1e-6 * max(1.0, extent))
    for _ in range(30):
        m = int(min(max((target - count) / rate * 1.2, 1024), 1_000_000))
        X = lo + (cells[rng.integers(len(cells), size=m)] + rng.random((m, 3))) * h
        f, g = value_and_gradient(field, X, batch_size)
        gnorm = np.linalg.norm(g, axis=1)
        take = (np.abs(f - level) < shell) & (rng.random(m) < np.minimum(gnorm, 1.0))
        rate = max(take.sum() / m, 1e-4)
        if take.any():
            Q = project(field, X[take], level, batch_size=batch_size)
            r = evaluate(field, Q, batch_size) - level
            # A step that jumped far (near a medial axis) would bias the density: drop it.
            moved = np.linalg.norm(Q - X[take], axis=1)
            ok = (np.abs(r) <= residual_tol) & (moved <= 4.0 * shell)
            found.append(Q[ok])
            count += int(ok.sum())
        if count >= target:
            break
    # Points projected onto a sharp edge can coincide; the thinning needs distinct points.
    X = np.unique(np.concatenate(found), axis=0) if found else np.empty((0, 3))
    if len(X) < n:
        raise BadInputError(
            f"only {len(X)} of {n} points could be placed on the level set f = {level:g}; it is "
            "empty or too small for this sampling resolution (raise the resolution)"
        )
    X = X[rng.permutation(len(X))]  # so ties in the thinning are broken at random
    return X[_thin(X, n)]
