"""Checks and changes for 3D printing, about one thing: walls.

:func:`thickness` measures how thick the solid is at points of its surface (the diameter of
the largest empty ball touching the surface there), so an artist sees where a print would be
too thin; :func:`hollow` turns a solid into a shell of a given wall, to save material.

Both measure with a distance field: the exact signed distance to a mesh
(:class:`~..surfaces.mesh_distance.MeshDistance`, e.g. of a field's remesh) or any 1-Lipschitz
field, whose
values are distance *bounds* and make the measured thickness conservative.

Example
-------
>>> from lipsdf_blender.core.inputs.primitives import icosphere
>>> from lipsdf_blender.core.surfaces.mesh_distance import MeshDistance
>>> ball = MeshDistance(*icosphere(1.0, 4))
>>> V, F, info = hollow(ball, 0.1, resolution=64)  # info["volume"] ~ 4/3 pi (1 - 0.9^3)
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import BadInputError, CancelledError
from ..fields.query import DEFAULT_BATCH, check_points, evaluate, value_and_gradient
from ..surfaces.topology import is_watertight, signed_volume
from ..types import Faces, Points, Scalars

#: Steps of the walk onto the surface along the normal (each one never crosses it).
SURFACE_STEPS = 30
#: Absolute slack of the empty-ball test, as a fraction of the bounds' diagonal: what float32
#: evaluation of the field resolves.
ABS_TOL = 1e-5


def _gradients(field, P: Points, batch_size: int) -> tuple[Scalars, Points]:
    """Values and gradients: the field's own exact ones when it offers them (a mesh's
    distance is not differentiable by autograd), else by automatic differentiation."""
    own = getattr(field, "value_and_gradient", None)
    if callable(own):
        return own(P)
    return value_and_gradient(field, P, batch_size)


def _diagonal(field) -> float:
    lo, hi = (np.asarray(b, dtype=np.float64).reshape(3) for b in field.bounds())
    diag = float(np.linalg.norm(hi - lo))
    if not math.isfinite(diag):
        raise BadInputError(f"the field has unusable bounds {lo} .. {hi}")
    return max(diag, 1e-12)


def thickness(
    field,
    P: Points,
    normals: Points | None = None,
    exact=None,
    rel_tol: float = 1e-2,
    max_diameter: float | None = None,
    batch_size: int = DEFAULT_BATCH,
    progress=None,
    cancel=None,
    gap: float = 0.0,
) -> Scalars:
    """Wall thickness at points of a solid's surface: the diameter of the largest empty ball.

    For each point ``p`` on (or near) the surface, with inward unit normal ``n``, the balls
    touching the surface at ``p`` from inside are ``B(p + r n, r)``, ``r >= 0``. They are
    nested (each contains the smaller ones), so the radii of those that lie inside the solid
    form an interval ``[0, r*]``, and bisection on ``r`` finds ``r*``. The thickness is
    ``2 r*``: the diameter of the largest ball that fits against the surface at ``p`` (the
    empty-sphere or "shrinking ball" measure; the ball's centre is then on the medial axis).

    A ball ``B(c, r)`` is certified empty when ``-F(c) >= r - max(rel_tol * r, abs_tol)``
    with ``abs_tol = 1e-5`` of the bounds' diagonal. With ``F`` the exact signed distance
    this is the exact test, up to the tolerance; with a 1-Lipschitz distance *bound*
    (``|F|`` at most the true distance) it is stricter than the truth, so the thickness is
    conservative: never larger than the true one, up to the tolerance. The normal must be
    the surface's own (a ball centred off the normal line crosses the surface next to
    ``p``): a normal tilted by ``theta`` from the true one is tolerated up to
    ``cos(theta) >= 1 - rel_tol``, about 8 degrees for the default, which lets a ball
    overlap the walls by ``rel_tol * r`` (a thickness up to ``rel_tol / 2`` too large).

    Normals: when the test's distance can give the surface's own normals (``exact`` a
    :class:`~..surfaces.mesh_distance.MeshDistance`: the smooth and the flat normal of the mesh at
    the closest point, where the point is moved; the larger of the two balls is kept, both being
    empty balls touching the point), those are used; a network's gradient, a few degrees off the
    facets of its remesh, makes the balls cross the facets next to ``p`` (on a trained
    sphere's remesh the median reads 40 % low with it). Otherwise each point is moved onto
    the zero level set of ``F`` along ``n`` (steps of ``F(p)``, which never cross it). All
    points are bisected together, about 15 steps, each
    one evaluation of ``F`` at the still-open points in batches.

    ``gap`` > 0 lets the ball stand off the surface by ``gap`` along the normal: balls
    ``B(p + (gap + r) n, r)`` (nested too), thickness ``2 r* + gap``. On a wall whose sides
    are parallel this is the same width; at a convex crease, where the largest ball touching
    exactly at the crease has no size at all (any ball tangent there leaves the wedge), it
    reads the size of the ball that fits within ``gap`` of the crease: about ``5.8 gap`` at a
    right angle, less at sharper ones. A point whose wall along ``n`` is thinner than
    ``gap`` is measured with no gap.

    Parameters
    ----------
    field : DistanceField
        Gives the normals when neither ``normals`` nor a mesh ``exact`` does:
        ``-grad f / |grad f|`` (its own exact gradients when it has a ``value_and_gradient``
        method, else by autograd); and the distance when ``exact`` is not given.
    P : (n, 3) float array
        Points on or near the surface, object units.
    normals : (n, 3) float array, optional
        Outward normals at the points (any length) to use instead of the field's gradient.
    exact : DistanceField, optional
        The exact signed distance for the empty-ball test, e.g. ``MeshDistance`` of the
        field's remesh (itself 1-Lipschitz). Default: ``field``, which gives a conservative
        thickness.
    rel_tol : float
        Relative slack of the empty-ball test and the precision of the bisection.
    max_diameter : float, optional
        Search balls up to this diameter only (object units); default: the diagonal of the
        bounds of the distance used.
    batch_size : int
        Points per evaluation.
    progress : callable ``(done: int, total: int) -> None``, optional
        Called after each bisection step.
    cancel : callable ``() -> bool``, optional
        Polled before each step; returning ``True`` raises :class:`CancelledError`.
    gap : float
        How far from the point the ball may stand (object units, >= 0; see above).

    Returns
    -------
    (n,) float64
        Thickness (object units). ``inf`` where the largest searched ball is still empty (no
        opposite wall found); ``nan`` where the normal is undefined (the gradient vanishes)
        or the surface was not reached along it.

    Raises
    ------
    BadInputError
        Malformed points or normals, or a tolerance or diameter that is not positive.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import SphereField
    >>> thickness(SphereField(radius=1.0), np.array([[1.0, 0.0, 0.0]]))  # ~ [2.]
    """
    P = check_points(P)
    rel_tol = float(rel_tol)
    if not 0.0 < rel_tol < 0.5:
        raise BadInputError(f"rel_tol must be between 0 and 0.5, got {rel_tol}")
    F = field if exact is None else exact
    diag = _diagonal(F)
    if max_diameter is None:
        R = diag
    else:
        max_diameter = float(max_diameter)
        if not (math.isfinite(max_diameter) and max_diameter > 0):
            raise BadInputError(f"max_diameter must be a positive distance, got {max_diameter}")
        R = 0.5 * max_diameter
    abs_tol = ABS_TOL * diag
    gap = float(gap)
    if not (math.isfinite(gap) and gap >= 0):
        raise BadInputError(f"gap must be a distance >= 0, got {gap}")

    on_surface = normals is None and callable(getattr(F, "surface_normals", None))
    n_points = len(P)
    if on_surface:
        # Already on the surface the balls are tested against; both normals are tried and
        # the larger certified ball kept (each is an empty ball touching the point).
        C, smooth, flat = F.surface_normals(P)
        P, g = np.vstack([C, C]), np.vstack([smooth, flat])
    elif normals is None:
        _, g = _gradients(field, P, batch_size)
    else:
        g = check_points(normals, "normals")
        if len(g) != len(P):
            raise BadInputError(f"got {len(g)} normals for {len(P)} points; give one per point")
    gnorm = np.linalg.norm(g, axis=1)
    ok = gnorm >= 1e-6
    out = np.full(len(P), np.nan)
    idx = np.flatnonzero(ok)
    n_in = -g[idx] / gnorm[idx, None]

    # Onto the surface along n: a step of F(p) is at most the distance to it (1-Lipschitz).
    X = P[idx].copy()
    on = np.zeros(len(idx), dtype=bool)
    walking = np.arange(len(idx))
    for _ in range(0 if on_surface else SURFACE_STEPS):
        if len(walking) == 0:
            break
        f = evaluate(F, X[walking], batch_size)
        done = np.abs(f) <= 0.1 * abs_tol
        on[walking[done]] = True
        walking, f = walking[~done], f[~done]
        X[walking] += f[:, None] * n_in[walking]
    if len(walking):
        on[walking] = np.abs(evaluate(F, X[walking], batch_size)) <= abs_tol
    idx, X, n_in = idx[on], X[on], n_in[on]
    # The stand-off of each point: none where the solid along n is thinner than the gap.
    off = np.full(len(idx), gap)
    if gap > 0 and len(idx):
        off[evaluate(F, X + gap * n_in, batch_size) > -abs_tol] = 0.0

    def empty(k: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Whether the balls of radius ``r`` at the points ``k``'s stand-off are certified
        empty."""
        c = X[k] + (off[k] + r)[:, None] * n_in[k]
        return -evaluate(F, c, batch_size) >= r - np.maximum(rel_tol * r, abs_tol)

    everything = np.arange(len(idx))
    lo = np.zeros(len(idx))
    hi = np.full(len(idx), R)
    unbounded = empty(everything, hi)
    # Halvings to bring R down to rel_tol / 4 of the thickness of a wall of abs_tol.
    total = int(np.ceil(np.log2(max(R / (0.25 * rel_tol * abs_tol), 2.0))))
    for step in range(total):
        if cancel is not None and cancel():
            raise CancelledError("the thickness measurement was cancelled")
        open_ = np.flatnonzero(~unbounded & (hi - lo > np.maximum(0.25 * rel_tol * lo, abs_tol)))
        if len(open_) == 0:
            break
        mid = 0.5 * (lo[open_] + hi[open_])
        fits = empty(open_, mid)
        lo[open_[fits]] = mid[fits]
        hi[open_[~fits]] = mid[~fits]
        if progress is not None:
            progress(step + 1, total)
    out[idx] = np.where(unbounded, np.inf, 2.0 * lo + off)
    return np.fmax(out[:n_points], out[n_points:]) if on_surface else out


def _split_target(faces: int, counts: tuple[int, int]) -> tuple[int, int]:
    """A total face target shared by the two parts in proportion to their sizes."""
    if faces == 0:
        return 0, 0
    total = sum(counts)
    a = max(8, round(faces * counts[0] / total))
    return a, max(8, faces - a)


def _deepest(exact, cells: int = 32) -> float:
    """How far inside the deepest grid point lies: about the largest wall possible."""
    lo, hi = (np.asarray(b, dtype=np.float64) for b in exact.bounds())
    axes = [np.linspace(lo[i], hi[i], cells) for i in range(3)]
    G = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return float(max(-evaluate(exact, G).min(), 0.0))


def hollow(
    exact,
    wall: float,
    resolution: int = 256,
    sharp: bool = True,
    faces: int = 0,
    device=None,
    progress=None,
    cancel=None,
) -> tuple[Points, Faces, dict]:
    """A solid made hollow: its surface plus the inward offset by ``wall``, turned inside out.

    The inner surface is the level set ``-wall`` of the exact signed distance (so every
    point of it is ``wall`` from the outer surface), extracted at ``resolution``; its faces
    are reversed, so the normals of the one resulting mesh point out of the material (into
    the cavity on the inside) and the mesh encloses the shell's volume.

    Parameters
    ----------
    exact : MeshDistance
        Exact signed distance to the closed outer surface (``exact.V``, ``exact.F``), object
        units, e.g. of a field's remesh.
    wall : float
        Wall thickness, object units, > 0.
    resolution : int
        Cells along the longest side for the inner surface's extraction.
    sharp : bool
        Dual contouring for the inner surface (its creases stay sharp).
    faces : int
        Target face count of the result (0: every triangle): the outer and the inner part
        are decimated separately (:func:`.simplify.decimate`), each to its share.
    device, progress, cancel
        As for :func:`.extract.extract_levels`.

    Returns
    -------
    V : (n, 3) float64
    F : (m, 3) int64
        Outer faces as they are, then the inner faces reversed; vertices concatenated.
    info : dict
        ``volume`` (the shell's: ``outer_volume - inner_volume``), ``outer_volume``,
        ``inner_volume`` (object units cubed, by the divergence theorem), ``watertight``
        (closed and consistently oriented), ``outer_faces``, ``inner_faces``.

    Raises
    ------
    BadInputError
        ``wall`` is not a positive finite number, or it is as thick as the object or thicker
        (the inner surface is empty: there is nothing to hollow out).

    Examples
    --------
    >>> from lipsdf_blender.core.inputs.primitives import icosphere
    >>> from lipsdf_blender.core.surfaces.mesh_distance import MeshDistance
    >>> V, F, info = hollow(MeshDistance(*icosphere(1.0, 4)), 0.2, resolution=64)
    """
    from ..surfaces.extract import extract_levels
    from ..surfaces.simplify import decimate

    wall = float(wall)
    if not (math.isfinite(wall) and wall > 0):
        raise BadInputError(f"the wall must be a positive thickness in object units, got {wall}")
    Vo = np.asarray(exact.V, dtype=np.float64)
    Fo = np.asarray(exact.F, dtype=np.int64)
    (inner,) = extract_levels(
        exact,
        [-wall],
        resolution=resolution,
        sharp=sharp,
        device=device,
        progress=progress,
        cancel=cancel,
    )
    if inner.is_empty:
        most = _deepest(exact)
        raise BadInputError(
            f"a wall of {wall:g} is as thick as the object or thicker: nothing is left to "
            f"hollow out; use a thinner wall (below about {most:.3g} here)"
        )
    Vi, Fi = inner.vertices, inner.faces
    fo, fi = _split_target(int(faces), (len(Fo), len(Fi)))
    Vo, Fo = decimate(Vo, Fo, fo)
    Vi, Fi = decimate(Vi, Fi, fi)
    V = np.vstack([Vo, Vi])
    F = np.vstack([Fo, Fi[:, ::-1] + len(Vo)]).astype(np.int64)
    outer_volume, inner_volume = signed_volume(Vo, Fo), signed_volume(Vi, Fi)
    info = {
        "volume": signed_volume(V, F),
        "outer_volume": outer_volume,
        "inner_volume": inner_volume,
        "watertight": is_watertight(F),
        "outer_faces": int(len(Fo)),
        "inner_faces": int(len(Fi)),
    }
    return V, F, info
