"""Trained fields stored with their objects (inside the .blend) and copied to the cache.

A field lives in the object's ``lipsdf`` property group: the ``.lipsdf`` file's bytes
(base64, so a .blend opened on another machine can offset without retraining), its SHA-256,
the hash of the geometry it was trained on and a summary for the panel. The worker reads
fields from files, so :func:`field_file` writes ``<cache>/<sha256>.lipsdf`` when missing.

A field is *stale* when the object's evaluated geometry no longer hashes to what it was
trained on. The panel asks :func:`field_state`, which caches the answer per object until a
depsgraph update reports that object's geometry changed.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import bpy

from ..core.errors import FieldFileError
from . import convert
from .plans.common import Trained, geometry_hash

NONE, FRESH, STALE = "none", "fresh", "stale"
_state_cache: dict[str, tuple[str, str]] = {}  # object name -> (field sha, state)


def has_field(obj) -> bool:
    return obj is not None and bool(getattr(obj, "lipsdf", None) and obj.lipsdf.data)


def store(obj, trained: Trained, cache_dir: Path) -> None:
    """Keep a freshly trained field with ``obj`` (and a copy in the cache)."""
    sha = hashlib.sha256(trained.data).hexdigest()
    pg = obj.lipsdf
    pg.data = base64.b64encode(trained.data).decode("ascii")
    pg.sha256 = sha
    pg.input_hash = trained.input_hash
    pg.kind = trained.kind
    pg.mode = trained.mode
    pg.thickness = trained.thickness or 0.0
    info = trained.info
    pg.preset = str(info.get("preset") or "")
    pg.device = str(info.get("device") or "")
    pg.seconds = float(info.get("seconds") or 0.0)
    pg.final_loss = float(info.get("final_loss") or 0.0)
    pg.samples = int(info.get("samples") or 0)
    pg.normals = trained.normals
    pg.noise = -1.0 if trained.noise is None else float(trained.noise)
    pg.cloud = trained.summary
    pg.warm = trained.warm
    _write_cache(cache_dir, sha, trained.data)
    _state_cache[obj.name] = (sha, FRESH)


def _write_cache(cache_dir: Path, sha: str, data: bytes) -> Path:
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{sha}.lipsdf"
    if not path.exists() or path.stat().st_size != len(data):
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def field_bytes(obj) -> bytes:
    pg = obj.lipsdf
    try:
        data = base64.b64decode(pg.data.encode("ascii"), validate=True)
    except ValueError:
        raise FieldFileError(f"{obj.name}'s stored field is damaged; train it again") from None
    if hashlib.sha256(data).hexdigest() != pg.sha256:
        raise FieldFileError(f"{obj.name}'s stored field is damaged; train it again")
    return data


def field_file(obj, cache_dir: Path) -> str:
    """The path of ``obj``'s field in the cache, written from the .blend when missing."""
    pg = obj.lipsdf
    path = Path(cache_dir) / f"{pg.sha256}.lipsdf"
    if not path.exists():
        path = _write_cache(cache_dir, pg.sha256, field_bytes(obj))
    return str(path)


def previous_field(obj, kind: str, arrays: dict, cache_dir: Path) -> str | None:
    """The cache path of ``obj``'s stored field when it is stale (trained on an earlier
    version of this geometry), for a warm start; ``None`` when there is none, it is up to
    date, or it is damaged (then training simply starts from scratch)."""
    if not has_field(obj) or obj.lipsdf.input_hash == geometry_hash(kind, arrays):
        return None
    try:
        return field_file(obj, cache_dir)
    except (FieldFileError, OSError):
        return None


def usable_field(
    obj,
    kind: str,
    arrays: dict,
    mode: str,
    thickness: float,
    normals: str = "auto",
    noise: float | None = None,
) -> bool:
    """Does ``obj`` hold a field trained on exactly this geometry with these settings?

    ``normals`` and ``noise`` are the point-cloud choices (``Settings.cloud_for``); a field
    stored before they existed was trained with ``auto`` normals and estimated noise.
    """
    if not has_field(obj):
        return False
    pg = obj.lipsdf
    if pg.input_hash != geometry_hash(kind, arrays) or pg.mode != mode:
        return False
    if (pg.normals or "auto") != normals or not _same_noise(_stored_noise(pg), noise):
        return False
    return mode != "unsigned" or abs(pg.thickness - thickness) <= 1e-9 * max(1.0, thickness)


def _stored_noise(pg) -> float | None:
    # Float properties hold single precision: compare the value as it was stored.
    return None if pg.noise < 0 else pg.noise


def _same_noise(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b), 1e-12)


def field_state(obj, depsgraph, refresh: bool = False) -> str:
    """``none``, ``fresh`` or ``stale`` (the geometry changed since training).

    Evaluates the object unless a cached answer is still valid (or ``refresh`` is false and
    an answer is cached). Not for ``draw()``: the panel uses :func:`cached_state`.
    """
    if not has_field(obj):
        return NONE
    pg = obj.lipsdf
    cached = _state_cache.get(obj.name)
    if cached is not None and cached[0] == pg.sha256 and not refresh:
        return cached[1]
    try:
        kind, arrays = convert.object_arrays(obj, depsgraph)
        state = FRESH if geometry_hash(kind, arrays) == pg.input_hash else STALE
    except Exception:  # an object emptied since training, say: its field no longer fits
        state = STALE
    _state_cache[obj.name] = (pg.sha256, state)
    return state


CHECKING = "checking"
_dirty: set[str] = set()
#: Seconds between an edit and the state check, so that a stroke of edits costs one check.
CHECK_DELAY = 0.5


def cached_state(obj) -> str:
    """The state for the panel, without evaluating anything: ``checking`` until known.

    Evaluating the depsgraph inside ``draw()`` is unsafe, so an unknown state is computed
    by a timer shortly after and the panel redrawn.
    """
    if not has_field(obj):
        return NONE
    cached = _state_cache.get(obj.name)
    if cached is not None and cached[0] == obj.lipsdf.sha256:
        return cached[1]
    _schedule(obj.name)
    return CHECKING


def _schedule(name: str) -> None:
    _dirty.add(name)
    if not bpy.app.timers.is_registered(_check_dirty):
        bpy.app.timers.register(_check_dirty, first_interval=CHECK_DELAY)


def _check_dirty():
    context = bpy.context
    depsgraph = context.evaluated_depsgraph_get()
    names = list(_dirty)
    _dirty.clear()
    for name in names:
        obj = bpy.data.objects.get(name)
        if obj is not None:
            field_state(obj, depsgraph, refresh=True)
    for window in getattr(context.window_manager, "windows", ()):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
    return None  # run once


@bpy.app.handlers.persistent
def _on_depsgraph_update(scene, depsgraph) -> None:
    for update in depsgraph.updates:
        if update.is_updated_geometry and isinstance(update.id, bpy.types.Object):
            _state_cache.pop(update.id.original.name, None)


@bpy.app.handlers.persistent
def _on_load(*_args) -> None:
    _state_cache.clear()
    _dirty.clear()


HANDLERS = (
    (bpy.app.handlers.depsgraph_update_post, _on_depsgraph_update),
    (bpy.app.handlers.load_post, _on_load),
)


def register() -> None:
    for handlers, fn in HANDLERS:
        if fn not in handlers:
            handlers.append(fn)


def unregister() -> None:
    for handlers, fn in HANDLERS:
        if fn in handlers:
            handlers.remove(fn)
    if bpy.app.timers.is_registered(_check_dirty):
        bpy.app.timers.unregister(_check_dirty)
    _state_cache.clear()
    _dirty.clear()
