"""One shape of a batch: read, train, remesh, offset, write, measure.

:func:`run_shape` is the whole job for one input file. Local workers and Ray tasks both call
it, so a batch gives the same outputs wherever it runs. It never raises for a bad shape: the
returned row says what went wrong (``status`` ``failed``, ``error``), so one shape never
stops a batch.

Outputs of an input ``chair.obj`` whose content hashes to ``3f2a...`` go in the folder
``<out>/chair-3f2a9c01d2`` (the stem and 10 hex digits of the hash, so two inputs called
``chair.obj`` in different folders do not meet)::

    chair.remesh.obj           the closed surface
    chair.offset+0.01.obj      one file per --offset distance
    chair.lipsdf               the field
    result.json                the row below, written last: a shape is finished when it exists
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..core.training.presets import DEFAULT_PRESET

#: Output mesh formats (what core.formats.files.save_mesh writes).
FORMATS = ("obj", "ply", "stl", "off")
#: The row written for each shape; the CSV table has these columns in this order.
COLUMNS = (
    "input",
    "hash",
    "status",
    "error",
    "attempts",
    "skipped",
    "seconds_read",
    "seconds_train",
    "seconds_remesh",
    "seconds_offset",
    "seconds_write",
    "seconds_total",
    "device",
    "worker",
    "vertices",
    "faces",
    "watertight",
    "volume",
    "components",
    "folder",
    "outputs",
    "settings",
    "first_error",
)
RESULT = "result.json"


@dataclass(frozen=True)
class Settings:
    """What is done to every shape. :meth:`key` names the settings that change the outputs."""

    preset: str = DEFAULT_PRESET
    mode: str | None = None  # None: signed, unsigned for curves
    seed: int = 0
    steps: int | None = None
    offsets: tuple[float, ...] = ()
    resolution: int | None = None
    detail: bool = True
    sharp: bool = True
    faces: int = 0
    format: str = "obj"
    device: str = "auto"
    normals: str = "auto"
    noise: float | None = None
    thickness: float | None = None
    # How the work runs, not what it makes: left out of the key.
    threads: int | None = field(default=None, compare=False)

    def __post_init__(self):
        from ..core.errors import BadInputError

        if self.format not in FORMATS:
            raise BadInputError(f"unknown output format {self.format!r}; use {', '.join(FORMATS)}")
        object.__setattr__(self, "offsets", tuple(float(d) for d in self.offsets))
        if any(d == 0 or d != d for d in self.offsets):
            raise BadInputError("an offset distance must be a number other than 0")

    def key(self) -> str:
        """A short hash of every setting that changes the outputs (not device or threads:
        those change the speed)."""
        d = asdict(self)
        for k in ("device", "threads"):
            d.pop(k)
        text = json.dumps(d, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Settings:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def file_hash(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (the input hash of the results table)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_name(path: str | os.PathLike, digest: str) -> str:
    """``<stem>-<10 hex digits>``, the stem reduced to safe characters."""
    stem = Path(path).stem
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80] or "shape"
    return f"{safe}-{digest[:10]}"


def finished(folder: Path, settings: Settings) -> dict | None:
    """The row of a shape already finished in ``folder`` with these settings, or ``None``.

    Finished means: ``result.json`` says ``ok``, for the same settings key, and every output
    it lists is still there.
    """
    try:
        row = json.loads((folder / RESULT).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(row, dict) or row.get("status") != "ok":
        return None
    if row.get("settings") != settings.key():
        return None
    outputs = row.get("outputs") or []
    if not outputs or not all((folder / name).is_file() for name in outputs):
        return None
    return row


def empty_row(path, digest: str, folder: str, settings: Settings) -> dict:
    row = {c: None for c in COLUMNS}
    row.update(
        input=str(path),
        hash=digest,
        folder=folder,
        settings=settings.key(),
        attempts=0,
        skipped=False,
        outputs=[],
    )
    return row


def worker_name() -> str:
    return f"{platform.node()}:{os.getpid()}"


def run_shape(
    path: str | os.PathLike,
    folder: str | os.PathLike,
    settings: Settings,
    digest: str | None = None,
    progress=None,
    cancel=None,
) -> dict:
    """Train, remesh and offset one input file; write the outputs into ``folder``.

    Parameters
    ----------
    path : path
        The input (any format :func:`core.formats.files.load_geometry` reads).
    folder : path
        Where the outputs go (made if missing). ``result.json`` is written last.
    settings : Settings
    digest : str, optional
        The input's sha256 (computed when not given).
    progress : callable(phase: str, done: int, total: int), optional
    cancel : callable() -> bool, optional

    Returns
    -------
    dict
        The row (:data:`COLUMNS`): ``status`` ``ok`` or ``failed`` with ``error``; never
        raises for a bad shape (a :class:`CancelledError` does propagate).
    """
    from ..core.errors import CancelledError, LipSDFError

    t_start = time.perf_counter()
    folder = Path(folder)
    digest = digest or file_hash(path)
    row = empty_row(path, digest, folder.name, settings)
    row["worker"] = worker_name()
    try:
        _work(Path(path), folder, settings, row, progress, cancel)
        row["status"] = "ok"
    except CancelledError:
        raise
    except LipSDFError as exc:
        row.update(status="failed", error=str(exc))
    except MemoryError:
        row.update(status="failed", error="out of memory; try a smaller preset or resolution")
    except Exception as exc:  # a bug or a library's error: recorded, the batch goes on
        tail = traceback.format_exc(limit=-3).strip().splitlines()[-1]
        row.update(status="failed", error=f"internal error ({type(exc).__name__}: {exc}); {tail}")
    row["seconds_total"] = round(time.perf_counter() - t_start, 3)
    if row["status"] == "ok":
        write_result(folder, row)
    return row


def _work(path: Path, folder: Path, settings: Settings, row: dict, progress, cancel) -> None:
    import torch

    from ..core.device import pick_device
    from ..core.errors import BadInputError
    from ..core.formats.files import load_geometry, save_mesh
    from ..core.surfaces.remesh import offset_surfaces, remesh
    from ..core.surfaces.topology import connected_components, is_watertight, signed_volume
    from ..core.training.presets import resolution_for
    from ..core.training.train import train_with

    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    say = progress or (lambda phase, done, total: None)

    def phase(name):
        return lambda done, total: say(name, done, total)

    with _timed(row, "read"):
        say("read", 0, 1)
        geom = load_geometry(path)

    with _timed(row, "train"):
        device = pick_device(settings.device)
        field = train_with(
            geom, settings, progress=lambda p: say(p.phase, p.step, p.total), cancel=cancel
        )
    row["device"] = field.record.get("device", str(device))

    res = resolution_for(settings.resolution, [field.record])
    kw = dict(device=device, cancel=cancel, detail=settings.detail, sharp=settings.sharp)
    with _timed(row, "remesh"):
        surface = remesh(field, res, progress=phase("remesh"), **kw)
        if len(surface.faces) == 0:
            raise BadInputError("the field has no surface (its zero level set is empty)")

    with _timed(row, "offset"):
        shells = []
        if settings.offsets:
            shells = offset_surfaces(
                field,
                settings.offsets,
                res,
                progress=phase("offset"),
                surface=surface,
                **kw,
            )
        if settings.faces:
            from ..core.surfaces.simplify import decimate_results

            decimate_results([surface], settings.faces)
            decimate_results(shells, settings.faces)

    with _timed(row, "write"):
        say("write", 0, 1)
        folder.mkdir(parents=True, exist_ok=True)
        stem = path.stem
        meshes = [(f"{stem}.remesh.{settings.format}", surface)]
        meshes += [
            (f"{stem}.offset{d:+g}.{settings.format}", shell)
            for d, shell in zip(settings.offsets, shells, strict=True)
        ]
        for name, mesh in meshes:
            if len(mesh.faces) == 0:
                raise BadInputError(f"{name} is empty: no surface at that level")
            save_mesh(folder / name, mesh.vertices, mesh.faces)  # both writers are atomic
        field.save(folder / f"{stem}.lipsdf")
    row["outputs"] = [name for name, _ in meshes] + [f"{stem}.lipsdf"]

    V, F = surface.vertices, surface.faces
    row["vertices"], row["faces"] = int(len(V)), int(len(F))
    row["watertight"] = bool(is_watertight(F))
    row["volume"] = float(signed_volume(V, F))
    row["components"] = int(connected_components(F))


@contextmanager
def _timed(row: dict, phase: str):
    """``row["seconds_<phase>"]``: the seconds the ``with`` block took."""
    t = time.perf_counter()
    yield
    row[f"seconds_{phase}"] = round(time.perf_counter() - t, 3)


def write_result(folder: Path, row: dict) -> None:
    """``folder/result.json``, atomically: the mark of a finished shape (:func:`finished`)."""
    from ..worker.protocol import save_bytes

    save_bytes(Path(folder) / RESULT, json.dumps(row, indent=1))
