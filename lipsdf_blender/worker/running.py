"""What a running job works with: the job object, the caches it shares, the fall-backs.

- :class:`Job`: one request being run: its params, its folder (files in and out, never a
  path out of it), its cancel event, its progress and ``log`` messages;
- :class:`FieldCache` (fields loaded recently) and :class:`ExactSurfaces` (the exact signed
  distance to recently remeshed fields, LRU of :data:`SURFACES_KEPT`), both held in
  :class:`Shared` by the server for all its jobs;
- the out-of-memory fall-backs: :func:`with_fallbacks` (retry with half the batch, then, from
  a GPU, on the CPU, each said in a ``log`` message) and :func:`on_device` (a core call on the
  job's device, with its progress and those fall-backs), :class:`OutOfMemory`,
  :func:`is_out_of_memory`, and :func:`error_kind` (the protocol's error kind of an exception).

The job families in :mod:`.jobs` use these; :mod:`.server` makes the jobs and sends what
they raise as ``error`` messages.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

from ..core.device import describe, pick_device
from ..core.errors import BadInputError, CancelledError, FieldFileError
from ..core.fields.field import Field, read_npz
from ..core.surfaces.mesh_distance import MeshDistance
from ..core.surfaces.remesh import remesh
from . import params as par
from . import protocol as P

log = logging.getLogger("lipsdf.worker")

#: Remeshed surfaces kept for jobs that measure exact distances (``exact``).
SURFACES_KEPT = 4
#: Points per batch of an extraction at full scale, and the smallest batch after halving.
EXTRACT_BATCH = 65536
MIN_EXTRACT_BATCH = 1024

_OOM_TYPES = tuple(
    t for t in (getattr(torch.cuda, "OutOfMemoryError", None), MemoryError) if t is not None
)


class OutOfMemory(Exception):
    """Even the fall-backs ran out of memory."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA / MPS / host out-of-memory errors."""
    return isinstance(exc, _OOM_TYPES) or (
        isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
    )


def error_kind(exc: BaseException) -> str:
    """The protocol's error kind for an exception raised by a job."""
    if isinstance(exc, P.RemoteError):
        return exc.kind
    if isinstance(exc, CancelledError):
        return P.CANCELLED
    if isinstance(exc, FieldFileError):
        return P.FIELD_FILE
    if isinstance(exc, BadInputError):
        return P.BAD_INPUT
    if isinstance(exc, OutOfMemory) or is_out_of_memory(exc):
        return P.OUT_OF_MEMORY
    return P.INTERNAL


class FieldCache:
    """Recently used fields, keyed by path, modification time and size (LRU)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: collections.OrderedDict = collections.OrderedDict()

    @staticmethod
    def key(path: Path):
        """The cache key of the file at ``path``: a rewritten file is loaded again."""
        st = path.stat()
        return (str(path), st.st_mtime_ns, st.st_size)

    def get(self, path) -> tuple[Field, bool]:
        """The field at ``path`` and whether it came from the cache."""
        path = Path(path).resolve()
        if not path.is_file():
            return Field.load(path), False  # raises a FieldFileError that names the file
        try:
            key = self.key(path)
        except OSError as exc:
            raise FieldFileError(f"cannot read the field file {path.name}: {exc}") from None
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key], True
        field = Field.load(path)
        self.put(path, field, key)
        return field, False

    def put(self, path, field: Field, key=None) -> None:
        """Keep ``field`` as the one at ``path`` (a field the worker has just written)."""
        path = Path(path).resolve()
        key = key or self.key(path)
        self._items[key] = field
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class ExactSurfaces:
    """The exact signed distance to recently remeshed fields, shared by the tools with
    ``exact`` (query, thickness, hollow, grid), least recently used first out.

    A surface is the one ``extract [0]`` gives for the field file with the job's
    ``resolution``, ``detail`` and ``sharp``; the libigl tree built on it is what is kept.
    """

    def __init__(self, size: int = SURFACES_KEPT):
        self.size = size
        self._items: collections.OrderedDict = collections.OrderedDict()

    def get(self, job: Job, name, field: Field, info: dict) -> MeshDistance:
        """The exact distance to ``field``'s remesh (``name`` is the field's file in the
        request), remeshed on a miss; ``info["surface_cached"]`` says which."""
        res = par.resolution(job.params, [field])
        detail = par.flag(job.params, "detail", True)
        sharp = par.flag(job.params, "sharp", True)
        key = (FieldCache.key(job.field_path(name).resolve()), res, detail, sharp)
        if key in self._items:
            self._items.move_to_end(key)
            info["surface_cached"] = True
            return self._items[key]
        r = on_device(job, "surface", remesh, field, res, detail=detail, sharp=sharp)
        if len(r.faces) == 0:
            raise BadInputError("the field has no surface (its zero level set is empty)")
        exact = MeshDistance(r.vertices, r.faces)
        info["surface_cached"] = False
        self._items[key] = exact
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return exact


class Shared:
    """What the jobs of one server share: the field cache, the exact surfaces and the
    out-of-memory test hook."""

    def __init__(self):
        self.fields = FieldCache()
        self.surfaces = ExactSurfaces()
        # Test hook: the next N attempts of a job raise a CUDA out-of-memory error, so the
        # fall-backs can be tested on a machine without a GPU.
        self.fake_oom = int(os.environ.get("LIPSDF_WORKER_FAKE_OOM", "0") or 0)


def _drop(message: dict) -> None:
    """Where the messages of a job made without a server go."""


class Job:
    """One request being run: its params and folder, its cancel event, its messages.

    ``send`` writes a protocol message (the server's :meth:`~.server.Server.send`); ``share``
    is the :class:`~..core.threads.FairShare` ticked from the cancel hook, or ``None``;
    ``shared`` the server's caches. A malformed ``params`` or ``job_dir`` raises
    :class:`BadInputError`.
    """

    def __init__(self, request: dict, send=_drop, share=None, shared: Shared | None = None):
        self.send = send
        self.share = share
        self.shared = shared if shared is not None else Shared()
        self.id = str(request.get("id"))
        self.type = request.get("type")
        self.params = request.get("params") or {}
        if not isinstance(self.params, dict):
            raise BadInputError("a job's params must be a JSON object")
        job_dir = request.get("job_dir")
        if job_dir is None or job_dir == "":
            self.dir = None
        elif not par.usable_path(job_dir) or not os.path.isabs(job_dir):
            raise BadInputError(
                f"job_dir must be an absolute folder path, got {par.short(job_dir)}"
            )
        else:
            self.dir = Path(job_dir)
        self.cancel_event = threading.Event()
        self.started = time.monotonic()
        self.last_progress: dict | None = None
        self.last_sent = 0.0

    # -- messages -------------------------------------------------------------------------
    def progress(self, phase: str, step: int, total: int, loss=None, eta=None, device=""):
        """Send a ``progress`` message (the heartbeat repeats the last one)."""
        msg = {
            "type": P.PROGRESS,
            "id": self.id,
            "phase": phase,
            "step": int(step),
            "total": int(total),
            "loss": loss,
            "elapsed": round(time.monotonic() - self.started, 3),
            "eta": eta,
            "device": device,
        }
        self.last_progress, self.last_sent = msg, time.monotonic()
        self.send(msg)

    def progress_hook(self, phase: str, device: str):
        """A core ``progress(done, total)`` hook: ``progress`` messages at most every 0.25 s
        (and always the last), with an estimate of the time left."""
        t0 = time.monotonic()

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if now - self.last_sent < 0.25 and done < total:
                return
            eta = (now - t0) / done * (total - done) if done > 0 else None
            self.progress(phase, done, total, None, eta, device)

        return report

    def log(self, level: str, message: str) -> None:
        """Send a ``log`` message (and write it to the worker's own log)."""
        getattr(log, level if level in ("info", "warning", "error") else "info")(message)
        self.send({"type": P.LOG, "id": self.id, "level": level, "message": message})

    def cancelled(self) -> bool:
        """The core's cancel hook; every long loop calls it from the computing thread, which
        is also where the thread count follows the cores left free (:mod:`core.threads`)."""
        if self.share is not None:
            self.share.tick()
        return self.cancel_event.is_set()

    # -- files ----------------------------------------------------------------------------
    def folder(self) -> Path:
        """The job folder, resolved; it must exist (the client makes it, the worker never
        creates folders)."""
        if self.dir is None:
            raise BadInputError("the job needs a job_dir for its files")
        if not self.dir.is_dir():
            raise BadInputError(f"the job folder {self.dir} does not exist or is not a folder")
        return self.dir.resolve()

    def path(self, name, what: str) -> Path:
        """A file named in the params, inside the job folder.

        Files the client hands over (``input``, ``points``) and results are kept inside
        ``job_dir``: a name with ``..``, an absolute path or a symbolic link that leads out
        of the folder is refused, so a request can neither read nor write anything else.
        """
        if not par.usable_path(name):
            raise BadInputError(f"{what} must be a file name, got {par.short(name)}")
        folder = self.folder()
        p = Path(name)
        if p.is_absolute() or ".." in p.parts:
            raise BadInputError(
                f"{what} {name!r} must be a file name inside the job folder, not a path out of it"
            )
        p = folder / p
        if not p.resolve().is_relative_to(folder):
            raise BadInputError(f"{what} {name!r} is a link that leads out of the job folder")
        return p

    def field_path(self, name) -> Path:
        """A ``.lipsdf`` to read: an absolute path (the add-on's field cache, an earlier job's
        result) or a name inside the job folder. Fields are only read, never written."""
        if par.usable_path(name) and os.path.isabs(name):
            return Path(name)
        return self.path(name, "field")

    def output(self, stem: str, suffix: str) -> Path:
        """Where the result goes: ``params["output"]`` (a plain file name) or
        ``<stem>_<job id><suffix>``, so jobs sharing a folder do not overwrite each other's
        results. Never a path out of the job folder, never through a link."""
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in self.id)[:64]
        name = self.params.get("output") or f"{stem}_{safe}{suffix}"
        if isinstance(name, str) and ("/" in name or "\\" in name or name in (".", "..")):
            raise BadInputError(f"output must be a plain file name, got {par.short(name)}")
        p = self.path(name, "output")
        for q in (p, p.with_name(p.name + ".part")):
            if q.is_symlink() or q.is_dir():
                raise BadInputError(f"output {q.name!r} is a link or a folder in the job folder")
        return p

    def read_input(self, name, what: str) -> dict:
        """The arrays of an input ``.npz`` in the job folder (at most
        :data:`~.params.MAX_INPUT_BYTES`, no pickles)."""
        path = self.path(name, what)
        if not path.is_file():
            raise BadInputError(f"{what} file {path.name} does not exist in the job folder")
        try:
            return read_npz(path, par.MAX_INPUT_BYTES)
        except (ValueError, OSError) as exc:
            raise BadInputError(f"{what} file {path.name} is not a readable .npz: {exc}") from None

    def read_points(self, name, what: str) -> np.ndarray:
        """The ``points`` array of an input ``.npz``: ``(n, 3)`` finite numbers, as float64."""
        arrays = self.read_input(name, what)
        if "points" not in arrays:
            raise BadInputError(f"{what} file has no array named 'points'")
        pts = arrays["points"]
        if (
            pts.ndim != 2
            or pts.shape[1:] != (3,)
            or pts.dtype.kind not in "iuf"
            or not np.isfinite(pts).all()
        ):
            raise BadInputError(f"{what} must be an (n, 3) array of finite numbers")
        return pts.astype(np.float64)

    # -- fields ---------------------------------------------------------------------------
    def field(self, name, info: dict) -> Field:
        """The field a param names, through the field cache; ``info["cached"]`` gets whether
        it was loaded already."""
        field, hit = self.shared.fields.get(self.field_path(name))
        info.setdefault("cached", []).append(hit)
        return field

    def exact(self, name, field: Field, info: dict) -> MeshDistance:
        """The exact signed distance to ``field``'s remesh, kept for the next jobs
        (:class:`ExactSurfaces`)."""
        return self.shared.surfaces.get(self, name, field, info)


def with_fallbacks(job: Job, attempt, device: str):
    """Run ``attempt(batch_scale, device)``; on out-of-memory halve the batch, then use
    the CPU, and say so in log messages."""
    plans = [(1.0, device), (0.5, device)]
    if pick_device(device).type != "cpu":
        plans.append((0.5, "cpu"))
    for i, (scale, dev) in enumerate(plans):
        try:
            if job.shared.fake_oom > 0:
                job.shared.fake_oom -= 1
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated for a test)")
            return attempt(scale, dev)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if i + 1 == len(plans):
                raise OutOfMemory(
                    "out of memory even with half the batch on the CPU; choose a smaller "
                    "preset or resolution"
                ) from exc
            nxt_scale, nxt_dev = plans[i + 1]
            what = "with half the batch" if nxt_dev == dev else "on the CPU (slower)"
            job.log("warning", f"out of memory on {dev}; retrying {what}")
    raise AssertionError("unreachable")


def on_device(job: Job, phase: str, fn, *args, batched: bool = True, **kwargs):
    """``fn(*args, **kwargs)``, a core call that extracts or evaluates on a grid, run on the
    job's ``device`` with the out-of-memory fall-backs.

    The call gets ``device``, ``progress`` (messages under ``phase``), ``cancel`` and, when
    ``batched``, ``batch_size``; one given in ``kwargs`` wins (a call that must stay on the
    CPU says ``device="cpu"``).
    """
    device = par.text(job.params, "device", "auto")
    name = describe(pick_device(device))
    job.progress(phase, 0, 1, None, None, name)

    def attempt(scale: float, dev: str):
        hooks = {
            "device": pick_device(dev),
            "progress": job.progress_hook(phase, name),
            "cancel": job.cancelled,
        }
        if batched:
            hooks["batch_size"] = max(MIN_EXTRACT_BATCH, int(EXTRACT_BATCH * scale))
        return fn(*args, **{**hooks, **kwargs})

    return with_fallbacks(job, attempt, device)


def save_meshes(job: Job, results, levels, info: dict) -> tuple[dict, dict]:
    """A job's answer with meshes: one ``.npz`` with ``levels`` and ``vertices_<i>`` /
    ``faces_<i>`` per result; ``info["faces"]`` gets their face counts."""
    arrays = {"levels": np.asarray(levels, dtype=np.float64)}
    for i, r in enumerate(results):
        arrays[f"vertices_{i}"] = np.asarray(r.vertices, dtype=np.float64)
        arrays[f"faces_{i}"] = np.asarray(r.faces, dtype=np.int64)
    path = P.save_arrays(job.output("meshes", ".npz"), **arrays)
    info["faces"] = [int(len(r.faces)) for r in results]
    return {"meshes": str(path.resolve())}, info
