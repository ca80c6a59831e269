"""The worker's loop: read requests, run core jobs one at a time, answer on the protocol stream.

Three threads besides the one that runs jobs:

- the *reader* reads stdin, queues jobs and acts on ``cancel`` and ``shutdown`` at once (a
  running job polls a :class:`threading.Event` through the core's cancel hooks); end of
  stdin means the parent is gone, and the worker exits;
- the *watchdog* exits the process when the parent process changes (the parent was killed
  and this process was re-parented), in case stdin stays open because a grandchild holds it;
- the *heartbeat* repeats the last progress message so the client hears from a running job at
  least once a second, even in phases the core reports rarely (labelling).

See :mod:`.protocol` for the messages.
"""

from __future__ import annotations

import collections
import importlib.metadata
import logging
import os
import platform
import queue
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..core.device import describe, describe_why_cpu, pick_device
from ..core.errors import BadInputError, CancelledError, FieldFileError
from ..core.fields.field import Field
from ..core.surfaces.extract import extract_levels
from ..core.surfaces.mesh_distance import MeshDistance
from ..core.surfaces.remesh import combine_surfaces, offset_surfaces, remesh
from ..core.surfaces.simplify import decimate_results
from ..core.training.presets import DEFAULT_PRESET, get_preset
from ..core.training.summary import record_summary
from ..core.training.train import Progress, train_field
from . import params as par
from . import protocol as P
from .jobs_grid import GridJobs
from .jobs_picture import PictureJobs
from .jobs_surface import SurfaceJobs
from .remote import RemoteError, from_environment

log = logging.getLogger("lipsdf.worker")

#: Seconds between progress messages at most (the protocol promises at least one a second).
HEARTBEAT = 0.9
#: Remeshed surfaces kept for jobs that measure exact distances (``exact``).
SURFACES_KEPT = 4
#: Seconds the worker waits for a running job to notice a cancel before it exits anyway.
EXIT_GRACE = 2.0

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
    if isinstance(exc, RemoteError):
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


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def handshake(share=None) -> dict:
    """The first message: versions, the device ``auto`` picks and the CPU threads."""
    dev = pick_device("auto")
    return {
        "type": P.HANDSHAKE,
        "protocol": P.PROTOCOL_VERSION,
        "pid": os.getpid(),
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "igl": _version("libigl"),
        "lipsdf": __version__,
        "cuda": torch.version.cuda,
        "device": {
            "type": dev.type,
            "name": describe(dev),
            "why_cpu": describe_why_cpu() if dev.type == "cpu" else None,
        },
        "threads": {
            "max": torch.get_num_threads(),
            "fair_share": bool(share is not None and share.active),
        },
    }


class FieldCache:
    """Recently used fields, keyed by path, modification time and size (LRU)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: collections.OrderedDict = collections.OrderedDict()

    @staticmethod
    def key(path: Path):
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
        path = Path(path).resolve()
        key = key or self.key(path)
        self._items[key] = field
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class _Job:
    """One request being run: its cancel event and its progress state."""

    def __init__(self, request: dict, share=None):
        self.share = share
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

    def cancelled(self) -> bool:
        """The core's cancel hook; every long loop calls it from the computing thread, which
        is also where the thread count follows the cores left free (:mod:`core.threads`)."""
        if self.share is not None:
            self.share.tick()
        return self.cancel_event.is_set()

    def _folder(self) -> Path:
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
        folder = self._folder()
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


class Server(SurfaceJobs, PictureJobs, GridJobs):
    """Serves requests from ``stdin`` (binary, JSON lines) and answers on ``out`` (text)."""

    def __init__(self, stdin, out, parent_pid: int | None = None, share=None):
        self.stdin, self.out = stdin, out
        self.share = share  # a core.threads.FairShare, or None: threads stay as they are
        self.parent_pid = os.getppid() if parent_pid is None else parent_pid
        self.jobs: queue.Queue = queue.Queue()
        self.fields = FieldCache()
        # Exact signed distances to recently remeshed fields (jobs with ``exact``), LRU.
        self.surfaces: collections.OrderedDict = collections.OrderedDict()
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._current: _Job | None = None
        self._queued: set[str] = set()  # ids waiting in the queue
        self._dropped: set[str] = set()  # queued jobs already answered as cancelled
        self._stopping = threading.Event()
        # Test hook: the next N attempts of a job raise a CUDA out-of-memory error, so the
        # fall-backs can be tested on a machine without a GPU.
        self._fake_oom = int(os.environ.get("LIPSDF_WORKER_FAKE_OOM", "0") or 0)
        # Jobs go to a Ray cluster when the environment names one (see .remote).
        self.forwarder = from_environment(self)

    # -- output ---------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        line = P.encode(message)
        with self._send_lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                # The parent closed our stdout: nobody is listening any more.
                os._exit(0)

    def log_message(self, job: _Job | None, level: str, message: str) -> None:
        getattr(log, level if level in ("info", "warning", "error") else "info")(message)
        self.send(
            {"type": P.LOG, "id": job.id if job else None, "level": level, "message": message}
        )

    def error(self, job_id, kind: str, message: str, tb: str = "") -> None:
        self.send(
            {"type": P.ERROR, "id": job_id, "kind": kind, "message": message, "traceback": tb}
        )

    def progress(
        self, job: _Job, phase: str, step: int, total: int, loss=None, eta=None, device=""
    ):
        msg = {
            "type": P.PROGRESS,
            "id": job.id,
            "phase": phase,
            "step": int(step),
            "total": int(total),
            "loss": loss,
            "elapsed": round(time.monotonic() - job.started, 3),
            "eta": eta,
            "device": device,
        }
        job.last_progress, job.last_sent = msg, time.monotonic()
        self.send(msg)

    # -- threads --------------------------------------------------------------------------
    def _reader(self) -> None:
        for raw in self.stdin:
            if not self.accept(raw):
                break
        # End of stdin (the parent closed the pipe or died) or a shutdown request.
        self._stop()

    def accept(self, raw: str | bytes) -> bool:
        """Act on one request line: answer a malformed one, cancel at once, or queue a job.

        Returns ``False`` for ``shutdown``. A line that is JSON but not a request gets one
        ``protocol`` error (with the line's ``id`` when it has one, so a client waiting for
        that id hears about it); nothing here raises, so the reader thread never dies.
        """
        if not raw.strip():
            return True
        try:
            msg = P.decode(raw)
        except P.ProtocolError as exc:
            self.error(P.request_id(raw), P.PROTOCOL, str(exc))
            return True
        kind, job_id = msg["type"], str(msg.get("id"))
        if kind == P.CANCEL:
            self._cancel(job_id)
        elif kind == P.SHUTDOWN:
            return False
        else:
            with self._state_lock:
                self._queued.add(job_id)
            self.jobs.put(msg)
        return True

    def _cancel(self, job_id: str) -> None:
        with self._state_lock:
            if self._current is not None and self._current.id == job_id:
                self._current.cancel_event.set()
                return
            if job_id not in self._queued:
                return  # finished (its answer went out already) or unknown
            self._queued.discard(job_id)
            self._dropped.add(job_id)
        self.error(job_id, P.CANCELLED, "the job was cancelled before it started")

    def _stop(self) -> None:
        self._stopping.set()
        with self._state_lock:
            if self._current is not None:
                self._current.cancel_event.set()
        self.jobs.put(None)
        # A job without cancel hooks must not keep an orphan alive.
        threading.Timer(EXIT_GRACE, os._exit, args=(0,)).start()

    def _watchdog(self) -> None:
        while not self._stopping.wait(0.5):
            if os.getppid() != self.parent_pid:
                log.warning("the parent process is gone; exiting")
                os._exit(0)

    def _heartbeat(self) -> None:
        while not self._stopping.wait(0.25):
            job = self._current
            if job is not None and job.last_progress is not None:
                if time.monotonic() - job.last_sent >= HEARTBEAT:
                    msg = dict(job.last_progress)
                    msg["elapsed"] = round(time.monotonic() - job.started, 3)
                    job.last_sent = time.monotonic()
                    self.send(msg)

    # -- main loop ------------------------------------------------------------------------
    def serve(self) -> int:
        for target in (self._reader, self._watchdog, self._heartbeat):
            threading.Thread(target=target, daemon=True, name=target.__name__).start()
        hs = handshake(self.share)
        if self.forwarder is not None:
            hs["remote"] = self.forwarder.describe()
        self.send(hs)
        while True:
            request = self.jobs.get()
            if request is None:
                return 0
            self.run(request)

    def run(self, request: dict) -> None:
        job_id = str(request.get("id"))
        try:
            job, failure = _Job(request, self.share), None
        except Exception as exc:
            job, failure = None, exc
        # One locked step from "queued" to "current", so a cancel always finds the job.
        with self._state_lock:
            self._queued.discard(job_id)
            if job_id in self._dropped:  # cancelled while queued; answered already
                self._dropped.discard(job_id)
                return
            stopping = self._stopping.is_set()
            if job is not None and not stopping:
                self._current = job
        if stopping:  # shutting down: queued jobs are not started
            self.error(job_id, P.CANCELLED, "the worker was shut down before the job started")
            return
        if failure is not None:
            tb = "".join(traceback.format_exception(failure))
            self.error(job_id, error_kind(failure), str(failure), tb)
            return
        log.info("job %s: %s", job.id, job.type)
        try:
            handler = getattr(self, f"job_{job.type}", None)
            if job.type not in P.JOB_TYPES or handler is None:
                raise BadInputError(
                    f"unknown job type {job.type!r}; use one of {', '.join(P.JOB_TYPES)}"
                )
            if self.forwarder is not None:
                handler = self.forwarder.route(handler)
            files, info = handler(job)
            self.send({"type": P.RESULT, "id": job.id, "files": files, "info": info})
        except Exception as exc:
            kind = error_kind(exc)
            message, tb = str(exc) or type(exc).__name__, traceback.format_exc()
            if isinstance(exc, RemoteError):  # already the protocol's kind and words
                tb = exc.traceback or tb
            elif kind == P.INTERNAL:
                message = f"internal error ({type(exc).__name__}: {exc}); please report it"
            elif kind == P.OUT_OF_MEMORY and not isinstance(exc, OutOfMemory):
                message = f"out of memory ({exc}); choose a smaller preset or resolution"
            log.warning("job %s failed (%s): %s", job.id, kind, message)
            self.error(job.id, kind, message, tb)
        finally:
            with self._state_lock:
                self._current = None
            if self.share is not None:
                self.share.restore()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    # -- out-of-memory fall-backs ---------------------------------------------------------
    def with_fallbacks(self, job: _Job, attempt, device: str):
        """Run ``attempt(batch_scale, device)``; on out-of-memory halve the batch, then use
        the CPU, and say so in log messages."""
        plans = [(1.0, device), (0.5, device)]
        if pick_device(device).type != "cpu":
            plans.append((0.5, "cpu"))
        for i, (scale, dev) in enumerate(plans):
            try:
                if self._fake_oom > 0:
                    self._fake_oom -= 1
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
                self.log_message(job, "warning", f"out of memory on {dev}; retrying {what}")
        raise AssertionError("unreachable")

    # -- jobs -----------------------------------------------------------------------------
    def _train_progress(self, job: _Job):
        def report(p: Progress) -> None:
            self.progress(job, p.phase, p.step, p.total, p.loss, p.eta, p.device)

        return report

    def _extract_progress(self, job: _Job, phase: str, device: str):
        t0 = time.monotonic()

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if now - job.last_sent < 0.25 and done < total:
                return
            eta = (now - t0) / done * (total - done) if done > 0 else None
            self.progress(job, phase, done, total, None, eta, device)

        return report

    def job_train(self, job: _Job):
        p = job.params
        kind = par.choice(p, "kind", "mesh", ("mesh", "points", "curve"))
        mode = par.choice(p, "mode", "signed", ("signed", "unsigned"))
        seed = par.whole(p, "seed", 0, 0, 2**63 - 1)
        thickness = None if p.get("thickness") is None else par.number(p, "thickness", 0.0, lo=0)
        overrides = par.overrides(p.get("overrides") or {})
        normals, noise = par.cloud_params(p)
        init = self._init_field(job)
        preset = par.text(p, "preset", DEFAULT_PRESET)
        base = get_preset(preset, **overrides)
        device = par.text(p, "device", "auto")
        pick_device(device)
        out = job.output("field", ".lipsdf")
        arrays = par.load_input(job, p.get("input", "input.npz"), "the training input")
        geom = par.geometry_from(kind, arrays)
        self.progress(job, "label", 0, base.steps, None, None, describe(pick_device(device)))

        def attempt(scale: float, dev: str) -> Field:
            ov = dict(overrides)
            if scale < 1.0:
                ov["batch_size"] = max(16, int(base.batch_size * scale))
            return train_field(
                geom,
                preset,
                mode=mode,
                device=dev,
                seed=seed,
                thickness=thickness,
                progress=self._train_progress(job),
                cancel=job.cancelled,
                normals=normals,
                noise=noise,
                init=init,
                **ov,
            )

        field = self.with_fallbacks(job, attempt, device)
        field.save(out)
        self.fields.put(out, field)
        r = field.record
        keys = ("device", "seconds", "seconds_labelling", "seconds_training", "final_loss")
        info = {k: r.get(k) for k in (*keys, "samples", "preset", "cloud")}
        info["summary"] = record_summary(r, noise_given=noise is not None)
        info["warm_start"] = par.warm_info(r.get("warm_start"))
        ws = info["warm_start"]
        if ws is not None and not ws["used"]:
            self.log_message(job, "info", f"trained from scratch: {ws['reason']}")
        return {"field": str(out.resolve())}, info

    def _init_field(self, job: _Job) -> Field | None:
        """A train job's ``init``: the old field to warm-start from, or ``None``.

        A missing or malformed path is the caller's mistake (``bad_input``); a file that
        cannot be read as a field only costs the warm start (trained from scratch, logged).
        """
        name = job.params.get("init")
        if name is None:
            return None
        if not isinstance(name, str) or not name.endswith(".lipsdf"):
            raise BadInputError(f"init must name a .lipsdf file, got {name!r}")
        path = job.field_path(name)
        if not path.is_file():
            raise BadInputError(f"the old field (init) {path} does not exist")
        try:
            field, _ = self.fields.get(path)
        except FieldFileError as exc:
            self.log_message(job, "warning", f"the old field cannot be read ({exc}); no warm start")
            return None
        return field

    def _field(self, job: _Job, name, info: dict) -> Field:
        field, hit = self.fields.get(job.field_path(name))
        info.setdefault("cached", []).append(hit)
        return field

    def _exact(self, job: _Job, name, field: Field, info: dict) -> MeshDistance:
        """The exact signed distance to ``field``'s remesh (the surface ``extract [0]`` gives
        with the job's ``resolution``, ``detail`` and ``sharp``), kept for the next jobs."""
        res = par.resolution(job.params, [field])
        detail = par.flag(job.params, "detail", True)
        sharp = par.flag(job.params, "sharp", True)
        key = (FieldCache.key(job.field_path(name).resolve()), res, detail, sharp)
        if key in self.surfaces:
            self.surfaces.move_to_end(key)
            info["surface_cached"] = True
            return self.surfaces[key]
        r = self._extract_with(
            job,
            lambda **kw: remesh(field, res, detail=detail, sharp=sharp, **kw),
            "surface",
        )
        if len(r.faces) == 0:
            raise BadInputError("the field has no surface (its zero level set is empty)")
        exact = MeshDistance(r.vertices, r.faces)
        info["surface_cached"] = False
        self.surfaces[key] = exact
        while len(self.surfaces) > SURFACES_KEPT:
            self.surfaces.popitem(last=False)
        return exact

    def _meshes(self, job: _Job, results, levels, info: dict):
        arrays = {"levels": np.asarray(levels, dtype=np.float64)}
        for i, r in enumerate(results):
            arrays[f"vertices_{i}"] = np.asarray(r.vertices, dtype=np.float64)
            arrays[f"faces_{i}"] = np.asarray(r.faces, dtype=np.int64)
        path = P.save_arrays(job.output("meshes", ".npz"), **arrays)
        info["faces"] = [int(len(r.faces)) for r in results]
        return {"meshes": str(path.resolve())}, info

    def _extract_with(self, job: _Job, fn, phase: str):
        device = par.text(job.params, "device", "auto")
        name = describe(pick_device(device))
        self.progress(job, phase, 0, 1, None, None, name)

        def attempt(scale: float, dev: str):
            return fn(
                batch_size=max(1024, int(65536 * scale)),
                device=pick_device(dev),
                progress=self._extract_progress(job, phase, name),
                cancel=job.cancelled,
            )

        return self.with_fallbacks(job, attempt, device)

    def job_extract(self, job: _Job):
        info: dict = {}
        levels = par.numbers(job.params, "levels", [0.0])
        if not levels:
            raise BadInputError("an extract job needs at least one level")
        sp = par.surface_params(job.params)
        field = self._field(job, job.params.get("field"), info)
        res = par.resolution(job.params, [field])
        if levels == [0.0]:
            results = self._extract_with(
                job, lambda **kw: [remesh(field, res, **sp, **kw)], "extract"
            )
        else:
            results = self._extract_with(
                job, lambda **kw: extract_levels(field, levels, resolution=res, **kw), "extract"
            )
            decimate_results(results, sp["faces"])
        return self._meshes(job, results, levels, info)

    def job_offset(self, job: _Job):
        info: dict = {}
        distances = par.numbers(job.params, "distances", [])
        if not distances:
            raise BadInputError("an offset job needs at least one distance")
        exact = par.flag(job.params, "exact", True)
        sp = par.surface_params(job.params)
        field = self._field(job, job.params.get("field"), info)
        res = par.resolution(job.params, [field])

        def run(batch_size, device, progress, cancel):
            # offset_surfaces has no batch size of its own; the core default is used.
            return offset_surfaces(
                field,
                distances,
                res,
                exact=exact,
                device=device,
                progress=progress,
                cancel=cancel,
                **sp,
            )

        results = self._extract_with(job, run, "offset")
        return self._meshes(job, results, distances, info)

    def job_csg(self, job: _Job):
        info: dict = {}
        p = job.params
        names = par.field_names(p)
        op = par.choice(p, "op", "union", ("union", "intersection", "difference"))
        blend = par.number(p, "blend", 0.0, lo=0)
        matrices = par.matrices(p.get("matrices"), len(names))
        sp = par.surface_params(p)
        fields = [self._field(job, n, info) for n in names]
        res = par.resolution(job.params, fields)

        def run(**kw):
            return [
                combine_surfaces(
                    op,
                    fields,
                    blend=blend,
                    matrices=matrices,
                    names=[Path(n).name for n in names],
                    resolution=res,
                    **sp,
                    **kw,
                )
            ]

        results = self._extract_with(job, run, "csg")
        return self._meshes(job, results, [0.0], info)
