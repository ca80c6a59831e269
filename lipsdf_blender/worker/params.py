"""Checks of a request's params: every value's type and range, before any work.

Each function raises :class:`~..core.errors.BadInputError` with a one-line message that names
the param, so a bad request is answered as ``bad_input`` and never reaches the core. Files
the params name are read by the job (:class:`.running.Job`); this module imports only the
core.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields as dataclass_fields

import numpy as np

from ..core.errors import BadInputError
from ..core.inputs.cloud import NORMALS_CHOICES
from ..core.inputs.geometry import Geometry
from ..core.training.presets import (
    DEFAULT_PRESET,
    PRESETS,
    RESOLUTION_RANGE,
    Preset,
    SampleConfig,
    resolution_for,
)


def usable_path(name) -> bool:
    """A string the file system can take: not empty, no NUL, encodable, no part longer than
    a file name may be (so a request's name cannot make ``stat`` raise)."""
    if not isinstance(name, str) or not name or "\0" in name or len(name) > 4096:
        return False
    try:
        parts = os.fsencode(name).split(b"/")
    except UnicodeError:
        return False
    return all(len(p) <= 255 for p in parts)


#: Accepted ranges of the size-setting params: a request may not make the worker allocate or
#: loop without bound (the add-on's own resolution slider stops at 2048).
RESOLUTION = RESOLUTION_RANGE
MAX_POINTS = 10_000_000
MAX_ITERATIONS = 1000
MAX_LIST = 256
#: Bytes of arrays one input ``.npz`` may hold (a compressed file may claim far more than it
#: has on disk; its array headers are checked against this before anything is allocated).
MAX_INPUT_BYTES = 4 << 30


def short(value) -> str:
    """A value for a one-line message: its repr, cut."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def whole(params: dict, key: str, default: int, lo: int, hi: int) -> int:
    """``params[key]`` (else ``default``): a whole number from ``lo`` to ``hi``."""
    v = params.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise BadInputError(f"{key} must be a whole number from {lo} to {hi}, got {short(v)}")
    return v


def is_number(v) -> bool:
    """A finite int or float (not a bool)."""
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def number(params: dict, key: str, default: float, lo: float = -math.inf) -> float:
    """``params[key]`` (else ``default``): a finite number ``>= lo``, as a float."""
    v = params.get(key, default)
    if not is_number(v) or v < lo or abs(v) > 1e30:
        bound = "" if lo == -math.inf else f" >= {lo:g}"
        raise BadInputError(f"{key} must be a finite number{bound}, got {short(v)}")
    return float(v)


def numbers(params: dict, key: str, default: list) -> list[float]:
    """``params[key]`` (else ``default``): a list of at most :data:`MAX_LIST` finite numbers."""
    v = params.get(key, default)
    if (
        not isinstance(v, list)
        or len(v) > MAX_LIST
        or not all(is_number(x) and abs(x) <= 1e30 for x in v)
    ):
        raise BadInputError(
            f"{key} must be a list of at most {MAX_LIST} finite numbers, got {short(v)}"
        )
    return [float(x) for x in v]


def flag(params: dict, key: str, default: bool) -> bool:
    """``params[key]`` (else ``default``): true or false."""
    v = params.get(key, default)
    if not isinstance(v, bool):
        raise BadInputError(f"{key} must be true or false, got {short(v)}")
    return v


def text(params: dict, key: str, default: str) -> str:
    """``params[key]`` (else ``default``): a string."""
    v = params.get(key, default)
    if not isinstance(v, str):
        raise BadInputError(f"{key} must be a string, got {short(v)}")
    return v


def choice(params: dict, key: str, default: str, choices: tuple[str, ...]) -> str:
    """``params[key]`` (else ``default``): one of ``choices``."""
    v = params.get(key, default)
    if not isinstance(v, str) or v not in choices:
        raise BadInputError(f"{key} must be one of {', '.join(choices)}, got {short(v)}")
    return v


def matrices(value, n: int) -> list[np.ndarray] | None:
    """``None`` or one finite 4x4 matrix (nested lists) per field."""
    if value is None:
        return None
    ok = isinstance(value, list) and len(value) == n
    ok = ok and all(
        isinstance(m, list)
        and len(m) == 4
        and all(isinstance(r, list) and len(r) == 4 and all(map(is_number, r)) for r in m)
        for m in value
    )
    if not ok:
        raise BadInputError(
            f"matrices must be one 4x4 list of finite numbers per field ({n}), got {short(value)}"
        )
    return [np.asarray(m, dtype=np.float64) for m in value]


def resolution(params: dict, fields) -> int:
    """The job's ``resolution`` (checked), else the largest the fields' records ask for
    (:func:`~..core.training.presets.resolution_for`)."""
    return resolution_of(params, [f.record for f in fields])


def resolution_of(params: dict, records) -> int:
    """The job's ``resolution`` (checked), else the largest these field records ask for (an
    ``exact_remesh`` gives the record its field would have: ``preset`` and ``settings``)."""
    given = None
    if params.get("resolution") is not None:
        given = whole(params, "resolution", 0, *RESOLUTION)
    return resolution_for(given, records)


def warm_info(ws: dict | None) -> dict | None:
    """The record's ``warm_start`` for a result's ``info`` (the facts the panel shows)."""
    if ws is None:
        return None
    keys = ("used", "from", "reason", "steps", "cold_steps", "samples", "relabelled", "labels")
    return {k: ws[k] for k in (*keys, "labels_reason") if k in ws}


def cloud_params(params: dict) -> tuple[str, float | None]:
    """``normals`` (``auto``/``estimate``, default auto) and ``noise`` (object units or
    ``None``: estimated) of a train job; meshes and curves ignore both."""
    normals = params.get("normals", "auto")
    if not isinstance(normals, str) or normals not in NORMALS_CHOICES:
        raise BadInputError(
            f"normals must be one of {', '.join(NORMALS_CHOICES)} (use the cloud's own normals "
            f"or estimate them), got {short(normals)}"
        )
    noise = params.get("noise")
    if noise is None:
        return normals, None
    if not is_number(noise) or noise < 0 or noise > 1e30:
        raise BadInputError(
            "noise must be a distance >= 0 in object units, or null to estimate it; "
            f"got {short(noise)}"
        )
    return normals, float(noise)


def surface_params(params: dict) -> dict:
    """``detail`` and ``sharp`` (default on) and ``faces`` (target face count, default 0)."""
    return {
        "detail": flag(params, "detail", True),
        "sharp": flag(params, "sharp", True),
        "faces": whole(params, "faces", 0, 0, 2**31 - 1),
    }


def remesh_checks(params: dict) -> None:
    """``resolution``, ``detail`` and ``sharp`` of a job that may remesh, checked before any
    work (the remesh itself reads them later, in :class:`.running.ExactSurfaces`)."""
    if params.get("resolution") is not None:
        whole(params, "resolution", 256, *RESOLUTION)
    flag(params, "detail", True)
    flag(params, "sharp", True)


def field_names(params: dict, key: str = "fields") -> list:
    """A job's list of 1 to :data:`MAX_LIST` field files (each checked when it is loaded)."""
    names = params.get(key)
    if not isinstance(names, list) or not 1 <= len(names) <= MAX_LIST:
        raise BadInputError(f"{key} must be a list of 1 to {MAX_LIST} field files")
    return names


def matrix(params: dict, key: str = "matrix") -> np.ndarray | None:
    """An optional 4x4 matrix (nested lists of finite numbers), ``None`` when absent."""
    value = params.get(key)
    if value is None:
        return None
    try:
        return matrices([value], 1)[0]
    except BadInputError:
        raise BadInputError(
            f"{key} must be a 4x4 list of finite numbers, got {short(value)}"
        ) from None


def geometry_from(kind: str, a: dict) -> Geometry:
    """The training input ``a`` (arrays) as a checked core geometry of ``kind``."""
    if "vertices" not in a:
        raise BadInputError("the input has no 'vertices' array")
    if kind == "mesh":
        if "faces" not in a:
            raise BadInputError("a mesh input needs a 'faces' array")
        g = Geometry.mesh(a["vertices"], a["faces"])
    elif kind == "points":
        g = Geometry.points(a["vertices"], a.get("normals"))
    elif kind == "curve":
        if "edges" not in a:
            raise BadInputError("a curve input needs an 'edges' array")
        g = Geometry.curve(a["vertices"], a["edges"])
    else:
        raise BadInputError(f"unknown geometry kind {kind!r}; use mesh, points or curve")
    return g.validate()


_PRESET_FIELDS = {f.name for f in dataclass_fields(Preset)} - {"name"}
_SAMPLE_FIELDS = {f.name for f in dataclass_fields(SampleConfig)}
#: Overridable settings that size memory or time, and the ranges accepted for them.
_INT_RANGES = {
    "depth": (1, 256),
    "width": (1, 4096),
    "steps": (1, 100_000_000),
    "batch_size": (1, 1 << 24),
    "resolution": RESOLUTION,
    "n_uniform": (0, 100_000_000),
    "n_surface": (0, 100_000_000),
}


def setting(key: str, value, default):
    """One preset or sample setting, of the type of its default."""
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        lo, hi = _INT_RANGES.get(key, (-(2**63), 2**63 - 1))
        ok = isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi
    elif isinstance(default, float):
        ok = is_number(value) and abs(value) <= 1e30
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, tuple):  # sigmas
        ok = isinstance(value, list) and 0 < len(value) <= 16
        ok = ok and all(is_number(x) and 0 < x <= 1e30 for x in value)
        value = tuple(float(x) for x in value) if ok else value
    else:
        ok = False
    if not ok:
        raise BadInputError(f"the setting {key} cannot be {short(value)}")
    return float(value) if isinstance(default, float) else value


def overrides(ov: dict) -> dict:
    """A train job's ``overrides``: known preset (and ``samples``) settings, each checked."""
    if not isinstance(ov, dict):
        raise BadInputError("overrides must be a JSON object of preset settings")
    unknown = set(ov) - _PRESET_FIELDS
    if unknown:
        raise BadInputError(
            f"unknown preset settings {sorted(unknown)}; use some of {sorted(_PRESET_FIELDS)}"
        )
    defaults = PRESETS[DEFAULT_PRESET]
    out = {}
    for k, v in ov.items():
        if k == "samples":
            if not isinstance(v, dict):
                raise BadInputError("the setting samples must be a JSON object")
            bad = set(v) - _SAMPLE_FIELDS
            if bad:
                raise BadInputError(f"unknown sample settings {sorted(bad)}")
            base = SampleConfig()
            out[k] = SampleConfig(**{n: setting(n, x, getattr(base, n)) for n, x in v.items()})
        else:
            out[k] = setting(k, v, getattr(defaults, k))
    return out


#: Picture sizes: each side at most this many pixels, and at most ``MAX_PIXELS`` in all.
PIXELS = (1, 4096)
MAX_PIXELS = 16 << 20


def pixels(params: dict, key: str = "pixels", default=None) -> tuple[int, int]:
    """A picture size ``[w, h]``: whole numbers from 1 to 4096, at most 16M pixels in all."""
    v = params.get(key, default)
    lo, hi = PIXELS
    ok = isinstance(v, list) and len(v) == 2
    ok = ok and all(isinstance(x, int) and not isinstance(x, bool) and lo <= x <= hi for x in v)
    if not ok or v[0] * v[1] > MAX_PIXELS:
        raise BadInputError(
            f"{key} must be [w, h], whole numbers from {lo} to {hi} with at most "
            f"{MAX_PIXELS} pixels in all, got {short(v)}"
        )
    return int(v[0]), int(v[1])


def camera(params: dict, key: str = "camera") -> dict:
    """A render job's camera: ``matrix`` (finite 4x4 with non-zero axes), ``type``
    (``persp``/``ortho``), ``fov`` in (0, pi) for persp, ``ortho_scale`` > 0 for ortho,
    ``pixels`` and ``clip`` ``[near, far]`` with ``0 <= near < far``. Returns a checked copy
    with a numpy matrix."""
    cam = params.get(key)
    if not isinstance(cam, dict):
        raise BadInputError(
            f"{key} must be a JSON object with matrix, type, fov or ortho_scale, pixels and clip"
        )
    what = f"{key}.matrix"
    M = matrix({what: cam.get("matrix")}, what)
    if M is None:
        raise BadInputError(f"{what} must be a 4x4 list of finite numbers (camera to world)")
    if np.any(np.linalg.norm(M[:3, :3], axis=0) == 0):
        raise BadInputError(f"{what} has a zero axis; use the camera's world matrix")
    kind = choice(cam, "type", "persp", ("persp", "ortho"))
    out = {"matrix": M, "type": kind, "pixels": list(pixels(cam, "pixels"))}
    if kind == "persp":
        fov = cam.get("fov")
        if not is_number(fov) or not 0 < fov < math.pi:
            raise BadInputError(
                f"{key}.fov must be an angle in radians between 0 and pi, got {short(fov)}"
            )
        out["fov"] = float(fov)
    else:
        scale = cam.get("ortho_scale")
        if not is_number(scale) or not 0 < scale <= 1e30:
            raise BadInputError(f"{key}.ortho_scale must be a positive width, got {short(scale)}")
        out["ortho_scale"] = float(scale)
    clip = cam.get("clip")
    ok = isinstance(clip, list) and len(clip) == 2 and all(is_number(c) for c in clip)
    if not ok or not 0 <= clip[0] < clip[1] or clip[1] > 1e30:
        raise BadInputError(
            f"{key}.clip must be [near, far] with 0 <= near < far, got {short(clip)}"
        )
    out["clip"] = [float(clip[0]), float(clip[1])]
    return out
