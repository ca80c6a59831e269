"""A field on a plane as pictures: its signed distance and its gradient norm, colour-coded.

The plane is given by a 4x4 matrix taking the plane's local square ``[-1, 1]^2`` (``z = 0``) to
the field's frame. Pixel ``(i, j)`` (row ``i``, column ``j``) has its centre at local
``(u, v) = (-1 + (2j + 1) / w, -1 + (2i + 1) / h)``: row 0 is the BOTTOM row, as in
Blender's ``Image.pixels``.

The colour maps are plain numpy (no matplotlib), so the worker's private environment can
draw them.

Example
-------
>>> from lipsdf_blender.core.fields.sdf import SphereField
>>> plane = np.diag([1.5, 1.5, 1.0, 1.0])  # the square [-1.5, 1.5]^2 in z = 0
>>> pic = slice_image(SphereField(radius=1.0), plane, pixels=(64, 64), spacing=0.25)
>>> pic["rgba"].shape, pic["min"]  # ((64, 64, 4), about -0.98)
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInputError, CancelledError
from ..fields.query import DEFAULT_BATCH, value_and_gradient

#: Gradient norms above this are drawn in pure red: the field would break its Lipschitz bound.
BOUND_TOLERANCE = 1e-4
#: Pixels per chunk of the evaluation (between cancel checks and progress reports).
CHUNK = 1 << 18

# Distance map: pale near the surface, saturated far from it (t = |f| / max |f|).
_INSIDE = np.array([[0.80, 0.88, 1.00], [0.30, 0.55, 0.92], [0.04, 0.16, 0.50]])  # blues
_OUTSIDE = np.array([[1.00, 0.90, 0.78], [0.98, 0.60, 0.22], [0.62, 0.24, 0.02]])  # oranges
_ISOLINE_DARKEN = 0.35
# Gradient-norm map over [0, 1]: dark violet to pale yellow (the viridis hues; red is not in
# it, so a bound violation in pure red cannot be mistaken for a value).
_SEQUENTIAL = np.array(
    [
        [0.267, 0.005, 0.329],
        [0.229, 0.322, 0.546],
        [0.128, 0.567, 0.551],
        [0.369, 0.789, 0.383],
        [0.993, 0.906, 0.144],
    ]
)
_VIOLATION = np.array([1.0, 0.0, 0.0])


def ramp(stops: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise linear colour ramp.

    Parameters
    ----------
    stops : (k, 3) float
        RGB colours at ``t = 0, 1/(k-1), ..., 1``.
    t : (...) float
        Positions, clipped to ``[0, 1]``.

    Returns
    -------
    (..., 3) float64
    """
    t = np.clip(np.asarray(t, dtype=np.float64), 0.0, 1.0) * (len(stops) - 1)
    k = np.minimum(np.floor(t).astype(np.int64), len(stops) - 2)
    a = (t - k)[..., None]
    return stops[k] * (1.0 - a) + stops[k + 1] * a


def _pixels(pixels) -> tuple[int, int]:
    try:
        w, h = (int(p) for p in pixels)
    except (TypeError, ValueError):
        raise BadInputError(f"pixels must be two whole numbers [w, h], got {pixels!r}") from None
    if w < 1 or h < 1:
        raise BadInputError(f"pixels must be at least 1 x 1, got {w} x {h}")
    return w, h


def _plane(plane) -> np.ndarray:
    M = np.asarray(plane, dtype=np.float64)
    if M.shape != (4, 4) or not np.isfinite(M).all():
        raise BadInputError("the plane must be a finite 4x4 matrix")
    if np.linalg.norm(M[:3, 0]) == 0.0 or np.linalg.norm(M[:3, 1]) == 0.0:
        raise BadInputError("the plane matrix flattens the plane's square to a line or point")
    return M


def plane_points(plane, pixels) -> np.ndarray:
    """The pixel centres of a plane, in the field's frame.

    Parameters
    ----------
    plane : (4, 4) array_like
        Takes the plane's local square ``[-1, 1]^2`` (``z = 0``) to the field's frame.
    pixels : (w, h) ints

    Returns
    -------
    (h * w, 3) float64
        Row-major: pixel ``(i, j)`` is point ``i * w + j``; row 0 at the bottom.

    Examples
    --------
    >>> plane_points(np.eye(4), (2, 1))  # [[-0.5, 0, 0], [0.5, 0, 0]]
    """
    M = _plane(plane)
    w, h = _pixels(pixels)
    u = -1.0 + (2.0 * np.arange(w) + 1.0) / w
    v = -1.0 + (2.0 * np.arange(h) + 1.0) / h
    U, V = np.meshgrid(u, v)  # (h, w): rows follow v
    return U.reshape(-1, 1) * M[:3, 0] + V.reshape(-1, 1) * M[:3, 1] + M[:3, 3]


def distance_colours(
    distance: np.ndarray, in_plane_gradient: np.ndarray, pixel: float, spacing: float
) -> tuple[np.ndarray, np.ndarray]:
    """The distance picture: a diverging map, isolines and the zero line.

    Parameters
    ----------
    distance : (h, w) float
        Field values (negative inside).
    in_plane_gradient : (h, w) float
        Norm of the gradient's part along the plane: how fast the value changes from pixel
        to pixel, per field unit.
    pixel : float
        Pixel size in field units.
    spacing : float
        Isoline spacing in field units; 0: no isolines.

    Returns
    -------
    rgba : (h, w, 4) float32
        Inside blue, outside orange, paler near the surface; isolines darkened; the zero
        level set white.
    lines : (h, w) uint8
        0 plain, 1 isoline, 2 zero line.

    Notes
    -----
    A pixel is on a line when its value lies within half of the value's change across the
    pixel (``|grad f| * pixel / 2``) of the line's value, so lines are about one pixel wide
    whatever the slope of the field; the zero line uses twice that, two pixels.
    """
    d = np.asarray(distance, dtype=np.float64)
    peak = float(np.max(np.abs(d))) if d.size else 0.0
    t = np.abs(d) / peak if peak > 0 else np.zeros_like(d)
    t = np.sqrt(t)  # more contrast near the surface, where the detail is
    rgb = np.where((d < 0)[..., None], ramp(_INSIDE, t), ramp(_OUTSIDE, t))
    change = np.asarray(in_plane_gradient, dtype=np.float64) * float(pixel)
    lines = np.zeros(d.shape, dtype=np.uint8)
    if spacing > 0:
        r = np.abs(d - spacing * np.round(d / spacing))
        lines[r <= 0.5 * change] = 1
    lines[np.abs(d) <= change] = 2
    rgb[lines == 1] *= _ISOLINE_DARKEN
    rgb[lines == 2] = 1.0
    rgba = np.concatenate([rgb, np.ones(d.shape + (1,))], axis=-1)
    return rgba.astype(np.float32), lines


def gradient_colours(gradient_norm: np.ndarray) -> np.ndarray:
    """The gradient-norm picture: dark (0) to light (1), pure red above ``1 + 1e-4``.

    Parameters
    ----------
    gradient_norm : (h, w) float

    Returns
    -------
    (h, w, 4) float32
        Opaque colours; no legend (the caller labels the picture).
    """
    g = np.asarray(gradient_norm, dtype=np.float64)
    rgb = ramp(_SEQUENTIAL, g)
    rgb[g > 1.0 + BOUND_TOLERANCE] = _VIOLATION
    return np.concatenate([rgb, np.ones(g.shape + (1,))], axis=-1).astype(np.float32)


def slice_image(
    field,
    plane,
    pixels=(512, 512),
    spacing: float = 0.0,
    batch_size: int = DEFAULT_BATCH,
    progress=None,
    cancel=None,
) -> dict:
    """A field's values and gradient norms on a plane, as arrays and pictures.

    Parameters
    ----------
    field : DistanceField
    plane : (4, 4) array_like
        Takes the plane's local square ``[-1, 1]^2`` (``z = 0``) to the field's frame.
    pixels : (w, h) ints
        Picture size.
    spacing : float
        Isoline spacing in the field's units; 0 draws no isolines.
    batch_size : int
        Points per evaluation.
    progress : callable(done, total), optional
        Called after each chunk of pixels.
    cancel : callable() -> bool, optional
        Polled between chunks; ``True`` raises :class:`CancelledError`.

    Returns
    -------
    dict
        ``distance``, ``gradient_norm`` ``(h, w)`` float64; ``rgba`` (see
        :func:`distance_colours`) and ``rgba_gradient`` (see :func:`gradient_colours`)
        ``(h, w, 4)`` float32; ``lines`` ``(h, w)`` uint8; ``min``, ``max``,
        ``gradient_max`` floats. Row 0 is the bottom row.

    Raises
    ------
    BadInputError
        A plane that is not a finite 4x4 matrix or flattens the square, pixels below 1,
        a negative or non-finite spacing.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import SphereField
    >>> pic = slice_image(SphereField(), np.diag([2.0, 2.0, 1.0, 1.0]), (32, 32))
    """
    M = _plane(plane)
    w, h = _pixels(pixels)
    spacing = float(spacing)
    if not np.isfinite(spacing) or spacing < 0:
        raise BadInputError(f"the isoline spacing must be zero or positive, got {spacing}")
    X = plane_points(M, (w, h))
    n = len(X)
    values = np.empty(n)
    grads = np.empty((n, 3))
    for start in range(0, n, CHUNK):
        if cancel is not None and cancel():
            raise CancelledError("the slice was cancelled")
        stop = min(start + CHUNK, n)
        values[start:stop], grads[start:stop] = value_and_gradient(field, X[start:stop], batch_size)
        if progress is not None:
            progress(stop, n)
    # The in-plane part of the gradient sets how fast the value changes across pixels.
    ex, ey = M[:3, 0], M[:3, 1]
    eu, ev = ex / np.linalg.norm(ex), ey / np.linalg.norm(ey)
    ev = ev - eu * (eu @ ev)  # a sheared plane: use an orthonormal pair of its directions
    ev = ev / max(np.linalg.norm(ev), 1e-300)
    in_plane = np.hypot(grads @ eu, grads @ ev).reshape(h, w)
    pixel = max(2.0 * np.linalg.norm(ex) / w, 2.0 * np.linalg.norm(ey) / h)
    distance = values.reshape(h, w)
    gnorm = np.linalg.norm(grads, axis=1).reshape(h, w)
    rgba, lines = distance_colours(distance, in_plane, pixel, spacing)
    return {
        "distance": distance,
        "gradient_norm": gnorm,
        "rgba": rgba,
        "rgba_gradient": gradient_colours(gnorm),
        "lines": lines,
        "min": float(distance.min()),
        "max": float(distance.max()),
        "gradient_max": float(gnorm.max()),
    }
