"""Sphere tracing a distance field from a camera: a shaded preview without a mesh.

A ray ``x(t) = o + t d`` (``|d| = 1``) steps ``t <- t + f(x(t))``. Because every field here is
1-Lipschitz, ``|f(x)|`` is at most the distance from ``x`` to the zero set, so the ball of
radius ``f(x)`` around ``x`` holds no surface and the step never passes through one: the
first surface along the ray is approached from the front and never skipped, for trained
fields, CSG trees and offsets alike. The march stops when ``f`` falls below a small
threshold (a hit) or the ray leaves the field's bounds box, the far clip or its step budget
(a miss).

Cameras follow Blender: the camera looks down its local ``-Z`` with ``+X`` right and ``+Y``
up; pixel ``(i, j)`` is row ``i`` from the BOTTOM, column ``j`` from the left, rays through
pixel centres.

Example
-------
>>> from lipsdf_blender.core.fields.sdf import SphereField
>>> M = np.eye(4); M[2, 3] = 4.0  # at z = 4, looking down -z at the origin
>>> cam = {"matrix": M, "type": "persp", "fov": 0.8, "pixels": [64, 48], "clip": [0.1, 100]}
>>> out = render(SphereField(), cam)
>>> out["rgba"].shape, out["info"]["hits"]  # ((48, 64, 4), about 1000)
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..errors import BadInputError, CancelledError
from ..fields.query import DEFAULT_BATCH, field_device, value_and_gradient
from ..types import Points, Scalars

#: The bounds box is grown by this fraction of its diagonal before rays are clipped to it,
#: so a surface lying on the box (an exact field's bounds are tight) is still reached.
BOX_MARGIN = 1e-2
#: Default hit threshold as a fraction of the bounds diagonal.
EPS_FRACTION = 1e-4
#: Hit threshold per pixel footprint in :func:`render` (see its notes).
FOOTPRINT_FRACTION = 0.05

#: Shading (a studio-like look): grey albedo, ambient, key light up-left of the camera, and a
#: headlight so faces turned away from the key light keep their form.
ALBEDO = 0.8
AMBIENT = 0.22
KEY = 0.6
HEAD = 0.35


def _camera(camera: dict):
    """Checked camera values: ``(M, kind, fov, ortho_scale, w, h, near, far)``."""
    if not isinstance(camera, dict):
        raise BadInputError("the camera must be a dict with matrix, type, pixels and clip")
    M = np.asarray(camera.get("matrix"), dtype=np.float64)
    if M.shape != (4, 4) or not np.isfinite(M).all():
        raise BadInputError("the camera matrix must be a finite 4x4 matrix")
    kind = camera.get("type", "persp")
    if kind not in ("persp", "ortho"):
        raise BadInputError(f"the camera type must be persp or ortho, got {kind!r}")
    fov = float(camera.get("fov", 0.0)) if kind == "persp" else 0.0
    scale = float(camera.get("ortho_scale", 0.0)) if kind == "ortho" else 0.0
    if kind == "persp" and not 0.0 < fov < math.pi:
        raise BadInputError(f"the camera's fov must be between 0 and pi radians, got {fov}")
    if kind == "ortho" and not (0.0 < scale < math.inf):
        raise BadInputError(f"the camera's ortho_scale must be positive, got {scale}")
    try:
        w, h = (int(p) for p in camera.get("pixels"))
        near, far = (float(c) for c in camera.get("clip", (0.0, math.inf)))
    except (TypeError, ValueError):
        raise BadInputError("the camera needs pixels [w, h] and clip [near, far]") from None
    if w < 1 or h < 1:
        raise BadInputError(f"the camera's pixels must be at least 1 x 1, got {w} x {h}")
    if not (0.0 <= near < far) or math.isnan(far):
        raise BadInputError(f"the camera's clip must have 0 <= near < far, got {near}, {far}")
    return M, kind, fov, scale, w, h, near, far


def _axes(M: np.ndarray):
    axes = []
    for k in range(3):
        a = M[:3, k]
        n = np.linalg.norm(a)
        if n == 0.0:
            raise BadInputError("the camera matrix has a zero axis")
        axes.append(a / n)
    return axes


def camera_rays(camera: dict) -> tuple[Points, Points]:
    """Rays through the pixel centres of a camera.

    Parameters
    ----------
    camera : dict
        ``matrix`` (4, 4) camera to world (may carry scale: its axes are normalised),
        ``type`` ``"persp"`` or ``"ortho"``, ``fov`` (persp: the full angle across the
        image width, radians), ``ortho_scale`` (ortho: the view's width in world units),
        ``pixels`` ``[w, h]``, ``clip`` ``[near, far]``.

    Returns
    -------
    origins : (h * w, 3) float64
    directions : (h * w, 3) float64
        Unit vectors. Row-major: pixel ``(i, j)`` is ray ``i * w + j``, row 0 at the bottom.

    Examples
    --------
    >>> cam = {"matrix": np.eye(4), "type": "ortho", "ortho_scale": 2.0, "pixels": [2, 2],
    ...        "clip": [0.0, 10.0]}
    >>> o, d = camera_rays(cam)  # o[0] = (-0.5, -0.5, 0), every d = (0, 0, -1)
    """
    M, kind, fov, scale, w, h, _, _ = _camera(camera)
    X, Y, Z = _axes(M)
    u = -1.0 + (2.0 * np.arange(w) + 1.0) / w
    v = (-1.0 + (2.0 * np.arange(h) + 1.0) / h) * (h / w)
    U, V = (a.reshape(-1, 1) for a in np.meshgrid(u, v))
    eye = M[:3, 3]
    if kind == "persp":
        half = math.tan(0.5 * fov)
        D = half * U * X + half * V * Y - Z
        D /= np.linalg.norm(D, axis=1, keepdims=True)
        O = np.broadcast_to(eye, D.shape).copy()
    else:
        O = eye + 0.5 * scale * (U * X + V * Y)
        D = np.broadcast_to(-Z, O.shape).copy()
    return O, D


def _box(field, margin: float):
    lo, hi = (np.asarray(b, dtype=np.float64).reshape(3) for b in field.bounds())
    if not (np.isfinite(lo).all() and np.isfinite(hi).all() and (hi >= lo).all()):
        raise BadInputError(f"the field has unusable bounds {lo} .. {hi}")
    diag = float(np.linalg.norm(hi - lo))
    grow = margin * max(diag, 1e-9)
    return lo - grow, hi + grow, max(diag, 1e-9)


def _box_span(O, D, lo, hi):
    """Entry and exit ``t`` of each ray in the box (entry > exit: missed)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / D
        t1, t2 = (lo - O) * inv, (hi - O) * inv
    # A ray parallel to a slab (0 * inf = nan) is inside it for all t or never.
    inside = (O >= lo) & (O <= hi)
    t_lo = np.where(np.isnan(t1), np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
    t_hi = np.where(np.isnan(t1), np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
    t_lo = np.where(D == 0, np.where(inside, -np.inf, np.inf), t_lo)
    t_hi = np.where(D == 0, np.where(inside, np.inf, -np.inf), t_hi)
    return t_lo.max(axis=1), t_hi.min(axis=1)


def sphere_trace(
    field,
    origins: Points,
    directions: Points,
    near=0.0,
    far=math.inf,
    eps=None,
    max_steps: int = 256,
    batch_size: int = DEFAULT_BATCH,
    cancel=None,
    progress=None,
    eps_slope: float = 0.0,
) -> tuple[Scalars, np.ndarray, np.ndarray]:
    """March rays through a distance field to its zero level set.

    Parameters
    ----------
    field : DistanceField
        1-Lipschitz, so the step ``f(x)`` never passes through the surface.
    origins, directions : (n, 3) float
        Ray origins and unit directions, in the field's units.
    near, far : float or (n,) float
        The part of each ray searched, as distances ``t`` along it. Marching starts at the
        later of ``near`` and the ray's entry into the bounds box (grown by
        ``BOX_MARGIN`` of its diagonal); rays that miss the box are misses without any
        evaluation.
    eps : float or (n,) float, optional
        Hit threshold in field units: a hit when ``f < eps + eps_slope * t``. Default
        ``EPS_FRACTION`` (1e-4) of the bounds diagonal: far below what a preview can show,
        and above the float32 noise of a trained field's values (~1e-6 of its box), so rays
        do not creep on forever near the surface.
    max_steps : int
        Steps per ray at most; a ray still marching then is a miss (it grazes a surface).
    batch_size : int
        Points per evaluation.
    cancel : callable() -> bool, optional
        Polled every step; ``True`` raises :class:`CancelledError`.
    progress : callable(step, max_steps), optional
        Called after every step.
    eps_slope : float
        Threshold growth per unit ``t``: a perspective camera's pixel footprint grows with
        distance, and a surface closer than a fraction of a pixel cannot be told apart.

    Returns
    -------
    t : (n,) float64
        Distance along the ray of the hit (``inf`` for misses).
    hit : (n,) bool
    steps : (n,) int64
        Evaluations spent on each ray.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import SphereField
    >>> t, hit, _ = sphere_trace(SphereField(), np.array([[0, 0, 5.0]]), np.array([[0, 0, -1.0]]))
    >>> t, hit  # (array([4.]), array([ True]))
    """
    O = np.asarray(origins, dtype=np.float64)
    D = np.asarray(directions, dtype=np.float64)
    if O.ndim != 2 or O.shape[1] != 3 or D.shape != O.shape:
        raise BadInputError("origins and directions must be two (n, 3) arrays of one shape")
    if not (np.isfinite(O).all() and np.isfinite(D).all()):
        raise BadInputError("ray origins and directions must be finite")
    n = len(O)
    lo, hi, diag = _box(field, BOX_MARGIN)
    t_in, t_out = _box_span(O, D, lo, hi)
    if cancel is not None and cancel():
        raise CancelledError("the preview was cancelled")
    start = np.maximum(t_in, np.broadcast_to(np.asarray(near, dtype=np.float64), (n,)))
    stop = np.minimum(t_out, np.broadcast_to(np.asarray(far, dtype=np.float64), (n,)))
    eps = EPS_FRACTION * diag if eps is None else eps
    eps = np.broadcast_to(np.asarray(eps, dtype=np.float64), (n,))

    t_all = np.full(n, np.inf)
    hit_all = np.zeros(n, dtype=bool)
    steps_all = np.zeros(n, dtype=np.int64)
    idx = np.flatnonzero(start <= stop)
    if len(idx) == 0 or max_steps < 1:
        return t_all, hit_all, steps_all

    device = field_device(field)

    def tensor(a):
        return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=device)

    # The march runs in float32 on the field's device; only the active rays are kept, so
    # each step evaluates just the rays still marching.
    ids = torch.as_tensor(idx, device=device)
    o, d = tensor(O[idx]), tensor(D[idx])
    t = tensor(start[idx])
    t_stop = tensor(stop[idx])
    e0, slope = tensor(eps[idx]), float(eps_slope)
    steps = torch.zeros(len(idx), dtype=torch.int64, device=device)
    with torch.no_grad():
        for step in range(int(max_steps)):
            x = o + t[:, None] * d
            parts = []
            for s in range(0, len(x), batch_size):  # a cancel check per batch: big pictures
                if cancel is not None and cancel():
                    raise CancelledError("the preview was cancelled")
                parts.append(field(x[s : s + batch_size]).reshape(-1))
            f = torch.cat(parts)
            steps += 1
            hit = f < e0 + slope * t
            t = torch.where(hit, t, t + f)
            done = hit | (t > t_stop) | ~torch.isfinite(f)
            last = step + 1 == int(max_steps)
            if last:
                done = torch.ones_like(done)
            if done.any():
                fin = ids[done].cpu().numpy()
                h = hit[done].cpu().numpy()
                t_all[fin[h]] = t[done][torch.as_tensor(h, device=device)].double().cpu().numpy()
                hit_all[fin] = h
                steps_all[fin] = steps[done].cpu().numpy()
                keep = ~done
                ids, o, d, t, t_stop, e0, steps = (
                    a[keep] for a in (ids, o, d, t, t_stop, e0, steps)
                )
            if progress is not None:
                progress(step + 1, int(max_steps))
            if len(ids) == 0:
                break
    return t_all, hit_all, steps_all


def shade(normals: Points, directions: Points, camera_matrix) -> np.ndarray:
    """Grey studio shading: ambient, a key light up-left of the camera and a headlight.

    Parameters
    ----------
    normals : (n, 3) float
        Unit surface normals.
    directions : (n, 3) float
        Unit view rays (from the camera to the surface).
    camera_matrix : (4, 4) array_like
        Camera to world; the key light sits up-left behind the camera.

    Returns
    -------
    (n, 3) float64
        RGB in ``[0, 1]``.
    """
    X, Y, Z = _axes(np.asarray(camera_matrix, dtype=np.float64))
    key = -X + Y + Z
    key /= np.linalg.norm(key)
    lambert = np.clip(normals @ key, 0.0, None)
    head = np.clip(-np.einsum("ij,ij->i", normals, directions), 0.0, None)
    grey = ALBEDO * (AMBIENT + KEY * lambert + HEAD * head)
    return np.repeat(np.clip(grey, 0.0, 1.0)[:, None], 3, axis=1)


def render(field, camera: dict, batch_size: int = DEFAULT_BATCH, cancel=None, progress=None):
    """A shaded picture of a field's surface, by sphere tracing.

    Parameters
    ----------
    field : DistanceField
        One field or a CSG tree, in world units.
    camera : dict
        As in :func:`camera_rays`; ``clip`` is measured along the camera's view axis, as
        Blender's clipping planes are.
    batch_size : int
        Points per evaluation.
    cancel : callable() -> bool, optional
        Polled every step.
    progress : callable(step, max_steps), optional

    Returns
    -------
    dict
        ``rgba`` ``(h, w, 4)`` float32 (alpha 1 on hits, 0 on misses), ``depth`` ``(h, w)``
        float64 (distance along the ray to the hit, ``inf`` for misses), ``info``
        (``seconds``, ``steps_mean``, ``steps_max``, ``hits``). Row 0 at the bottom.

    Notes
    -----
    The hit threshold is ``EPS_FRACTION`` of the bounds diagonal plus
    ``FOOTPRINT_FRACTION`` (a twentieth) of the pixel's footprint at the point. A ray that
    passes the surface closer than the threshold counts as a hit, so silhouettes grow by at
    most a twentieth of a pixel (invisible), while rays grazing a silhouette, whose steps
    shrink to their distance from the surface, stop after a bounded number of steps instead of
    creeping along it. Depth errors are as small: the hit point is within the threshold of the
    surface. Normals are the normalised gradients at the hits.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import BoxField
    >>> cam = {"matrix": np.eye(4), "type": "ortho", "ortho_scale": 4.0, "pixels": [32, 32],
    ...        "clip": [0.0, 10.0]}
    >>> cam["matrix"][2, 3] = 5.0
    >>> render(BoxField(), cam)["info"]["hits"]  # 256: the box covers half the width
    """
    t0 = time.perf_counter()
    M, kind, fov, scale, w, h, near, far = _camera(camera)
    O, D = camera_rays(camera)
    if cancel is not None and cancel():
        raise CancelledError("the preview was cancelled")
    _, _, Z = _axes(M)
    # Clip planes are perpendicular to the view axis: along a ray they lie at clip / cos.
    cos = np.clip(D @ -Z, 1e-6, None)
    _, _, diag = _box(field, BOX_MARGIN)
    if kind == "persp":
        eps, slope = EPS_FRACTION * diag, FOOTPRINT_FRACTION * 2.0 * math.tan(0.5 * fov) / w
    else:
        eps, slope = EPS_FRACTION * diag + FOOTPRINT_FRACTION * scale / w, 0.0
    t, hit, steps = sphere_trace(
        field,
        O,
        D,
        near / cos,
        far / cos,
        eps=eps,
        eps_slope=slope,
        batch_size=batch_size,
        cancel=cancel,
        progress=progress,
    )
    rgba = np.zeros((h * w, 4), dtype=np.float32)
    if hit.any():
        Xh = O[hit] + t[hit, None] * D[hit]
        _, G = value_and_gradient(field, Xh, batch_size)
        norm = np.linalg.norm(G, axis=1, keepdims=True)
        N = np.where(norm > 1e-12, G / np.maximum(norm, 1e-300), -D[hit])
        rgba[hit, :3] = shade(N, D[hit], M)
        rgba[hit, 3] = 1.0
    traced = steps[steps > 0]
    info = {
        "seconds": time.perf_counter() - t0,
        "steps_mean": float(traced.mean()) if len(traced) else 0.0,
        "steps_max": int(steps.max()) if len(steps) else 0,
        "hits": int(hit.sum()),
    }
    return {"rgba": rgba.reshape(h, w, 4), "depth": t.reshape(h, w), "info": info}
