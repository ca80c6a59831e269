"""Forwarding the worker's jobs to a Ray cluster (a GPU server), with the same job code.

The add-on still starts a local worker and speaks the protocol to it. When the worker's
environment names a cluster (``LIPSDF_WORKER_RAY``), each job is forwarded:

- the local worker connects on the first job (progress phase ``connect``) and starts one
  Ray actor, :class:`ClusterWorker`, on a node with a GPU where the cluster has GPUs;
- the actor holds a real :class:`.server.Server` whose messages are buffered instead of
  written to stdout, so the jobs run exactly as in a local worker;
- the files a request names travel with it: the job's inputs (relative names in ``job_dir``)
  into a folder of the actor's own, fields (``.lipsdf``) stored by their SHA-256 so a field
  sent once stays loaded there (the field cache and the exact-surface cache hit on the next
  job for it) and is not sent again;
- the local worker polls the actor's messages every :data:`POLL` seconds and sends them on
  (progress, logs), forwards a ``cancel``, and writes the result files back into the local
  ``job_dir`` under the names a local run gives them.

A lost connection ends the job with the error kind ``remote``. With the fall-back
(``LIPSDF_WORKER_RAY_FALLBACK=1``) the next jobs then run on this computer; without it the
next job connects again. A cluster that cannot be reached before a job is sent costs
nothing with the fall-back: the job runs here at once, with a ``log`` warning.

Importing this module imports neither Ray nor torch: the worker imports Ray only when a
cluster is configured, and Blender's process never does.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import traceback
import weakref
from pathlib import Path

from ..core.errors import BadInputError, CancelledError
from . import protocol as P
from .protocol import RemoteError

log = logging.getLogger("lipsdf.remote")

#: The environment variables a worker reads at start.
ENV_ADDRESS = "LIPSDF_WORKER_RAY"
ENV_FALLBACK = "LIPSDF_WORKER_RAY_FALLBACK"
#: Seconds between two polls of the actor's messages.
POLL = 0.2
#: Seconds an actor call may take before the cluster counts as lost.
STALL = 30.0
#: Seconds the cluster has to start the actor (a GPU node may first fetch the package).
ACTOR_START = 300.0
#: Seconds a cancelled remote job has to answer before the job ends here anyway.
CANCEL_WAIT = 10.0
#: Fields the actor keeps on its disk (least recently used ones go first).
BLOBS_KEPT = 64

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


class _Lost(Exception):
    """A Ray call failed because the cluster or the actor is gone."""


def fallback_flag(value: str | None) -> bool:
    """``LIPSDF_WORKER_RAY_FALLBACK`` as a bool (absent: on)."""
    if value is None:
        return True
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{ENV_FALLBACK} must be 1 or 0, got {value!r}")


def from_environment(server, environ=None) -> Forwarder | None:
    """The forwarder a worker's environment asks for, or ``None`` (jobs run here);
    ``server`` is the local :class:`.server.Server` whose stream the forwarded jobs'
    messages go to."""
    environ = os.environ if environ is None else environ
    address = (environ.get(ENV_ADDRESS) or "").strip()
    if not address:
        return None
    return Forwarder(server, address, fallback_flag(environ.get(ENV_FALLBACK)))


# -- the cluster side ------------------------------------------------------------------------
class ClusterWorker:
    """What runs on the cluster (as a threaded Ray actor): a real server and a file store.

    ``run`` runs one job at a time; ``messages`` and ``cancel`` are called from other
    threads of the actor while it runs.
    """

    def __init__(self):
        from .server import Server

        worker = self

        class Buffered(Server):
            """A server whose messages are kept for :meth:`ClusterWorker.messages`."""

            def send(self, message: dict) -> None:
                worker.keep(message)

        self.root = Path(tempfile.mkdtemp(prefix="lipsdf-remote-"))
        (self.root / "fields").mkdir()
        # The folder goes with the actor (also when its process exits).
        weakref.finalize(self, shutil.rmtree, str(self.root), True)
        self._lock = threading.Lock()
        self._messages: list[dict] = []
        self._finals: dict[str, dict] = {}
        self._blobs: collections.OrderedDict = collections.OrderedDict()
        self.server = Buffered(None, None, parent_pid=0)  # never forwards again from here
        self._jobs = 0

    def keep(self, message: dict) -> None:
        """Keep a message of the server's: a final one for :meth:`run`, others for
        :meth:`messages`."""
        # Messages are sent as JSON by the local worker; encode here so what goes back is
        # exactly what a local worker would write (NaN as null).
        message = P.decode(P.encode(message))
        with self._lock:
            if message["type"] in P.FINAL:
                self._finals[str(message.get("id"))] = message
            else:
                self._messages.append(message)

    def ready(self) -> dict:
        """Where the actor runs: node name and the device ``auto`` picks there."""
        from ..core.device import describe, pick_device

        return {"node": socket.gethostname(), "device": describe(pick_device("auto"))}

    def messages(self) -> list[dict]:
        """Progress and log messages since the last call."""
        with self._lock:
            out, self._messages = self._messages, []
        return out

    def cancel(self, job_id: str) -> None:
        """Cancel the job ``job_id`` (running or queued)."""
        self.server.cancel(str(job_id))

    def missing(self, names: list[str]) -> list[str]:
        """Which of these stored field names (``<sha256>.lipsdf``) the actor lacks."""
        return [n for n in names if not (self.root / "fields" / Path(n).name).is_file()]

    def _blob(self, name: str) -> Path:
        path = self.root / "fields" / Path(name).name
        self._blobs[path.name] = True
        self._blobs.move_to_end(path.name)
        while len(self._blobs) > BLOBS_KEPT:
            old, _ = self._blobs.popitem(last=False)
            (self.root / "fields" / old).unlink(missing_ok=True)
        return path

    def run(self, request: dict, inputs: dict, fields: dict, refs: list) -> tuple[dict, dict]:
        """Run one job; return its final message and its result files' bytes.

        ``inputs``: ``{relative name: bytes}`` written into the job's folder here;
        ``fields``: ``{stored name: bytes}``, fields this actor lacks; ``refs``: ``(key,
        index, stored name)``, the params that name a field, pointed at the stored copy.
        """
        job_id = str(request.get("id"))
        self._jobs += 1
        folder = self.root / f"job-{self._jobs}"
        try:
            folder.mkdir()
            for name, data in fields.items():
                path = self._blob(name)
                if not path.is_file():
                    P.save_bytes(path, data)
            for name, data in inputs.items():
                path = folder / name
                if Path(name).is_absolute() or ".." in Path(name).parts:
                    raise BadInputError(f"input {name!r} must be a name inside the job folder")
                path.parent.mkdir(parents=True, exist_ok=True)
                P.save_bytes(path, data)
            params = dict(request.get("params") or {})
            for key, index, name in refs:
                path = str(self._blob(name))
                if index is None:
                    params[key] = path
                else:
                    params[key] = list(params[key])
                    params[key][index] = path
            request = dict(request, params=params, job_dir=str(folder))
            self.server.mark_queued(job_id)  # so a cancel that comes first is not lost
            self.server.run(request)
            with self._lock:
                final = self._finals.pop(job_id)
            return final, self._results(final, folder)
        except Exception as exc:
            with self._lock:
                self._finals.pop(job_id, None)
            kind = P.BAD_INPUT if isinstance(exc, BadInputError) else P.INTERNAL
            message = str(exc) if kind == P.BAD_INPUT else f"internal error on the cluster: {exc}"
            tb = traceback.format_exc()
            return {"type": P.ERROR, "id": job_id, "kind": kind, "message": message,
                    "traceback": tb}, {}  # fmt: skip
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _results(self, final: dict, folder: Path) -> dict:
        """The result files' bytes; a new field is also stored by its hash and registered in
        the field cache, so the next job on it neither sends nor loads it again."""
        out = {}
        for key, name in (final.get("files") or {}).items() if final["type"] == P.RESULT else ():
            path = Path(name)
            data = path.read_bytes()
            out[key] = (path.name, data)
            if path.suffix == ".lipsdf" and path.resolve().is_relative_to(folder.resolve()):
                field, _ = self.server.shared.fields.get(path)
                stored = self._blob(stored_name(data, path.suffix))
                os.replace(path, stored)  # keeps the modification time: the cache key holds
                self.server.shared.fields.put(stored, field)
        return out


def stored_name(data: bytes, suffix: str) -> str:
    """The name a file is stored under on the cluster: its SHA-256 and its suffix."""
    return hashlib.sha256(data).hexdigest() + suffix


_ACTOR = None


def actor_class(ray):
    """:class:`ClusterWorker` as a Ray actor class (made once; threaded)."""
    global _ACTOR
    if _ACTOR is None:
        _ACTOR = ray.remote(max_concurrency=4)(ClusterWorker)
    return _ACTOR


# -- the local side --------------------------------------------------------------------------
class Forwarder:
    """Sends a local worker's jobs to the cluster at ``address`` (see the module's text)."""

    def __init__(self, server, address: str, fallback: bool):
        self.server, self.address, self.fallback = server, address, fallback
        self.local = False  # the fall-back took over: jobs run here from now on
        self._ray = None
        self._actor = None
        self._where: dict = {}

    def describe(self) -> dict:
        """The handshake's ``remote``: what is configured (not whether it is connected)."""
        return {"address": self.address, "fallback": self.fallback}

    def route(self, handler):
        """The job handler to use instead of ``handler`` (the local one)."""

        def run(job):
            if self.local:
                return handler(job)
            try:
                self._connect(job)
            except _Lost as exc:
                # Nothing was sent yet: with the fall-back the job runs here, nothing lost.
                if not self.fallback:
                    raise RemoteError(
                        P.REMOTE,
                        f"cannot reach the Ray cluster at {self.address}: {exc}. The job was "
                        "not run; check the cluster address in the add-on's preferences (the "
                        "next job tries to connect again)",
                    ) from None
                self.local = True
                job.log(
                    "warning",
                    f"cannot reach the Ray cluster at {self.address} ({exc}); this job and "
                    "the next ones run on this computer (until the worker restarts)",
                )
                return handler(job)
            return self._forward(job)

        return run

    # -- connection -----------------------------------------------------------------------
    def _connect(self, job) -> None:
        if self._actor is not None:
            return
        job.progress("connect", 0, 1, None, None, self.address)
        from . import cluster

        try:
            ray = cluster.ray_module()
            info = cluster.connect(self.address)
        except cluster.ClusterError as exc:
            self._disconnect()
            raise _Lost(_reason(exc, self.address)) from None
        except Exception as exc:  # anything Ray raises while it connects
            self._disconnect()
            raise _Lost(f"{type(exc).__name__}: {exc}") from None
        try:
            actor = actor_class(ray).options(**cluster.task_resources(info)).remote()
            ready = actor.ready.remote()
            deadline = time.monotonic() + ACTOR_START
            while not ray.wait([ready], timeout=POLL)[0]:
                if job.cancel_event.is_set():
                    ray.kill(actor)
                    raise CancelledError("the job was cancelled while the cluster started")
                if time.monotonic() > deadline:
                    ray.kill(actor)
                    raise _Lost(
                        f"the cluster did not start the worker within {ACTOR_START:.0f} s "
                        f"(it has {info['gpus']:g} GPUs and {info['cpus']:g} CPUs; are they "
                        "all busy?)"
                    )
            where = ray.get(ready, timeout=STALL)
        except (CancelledError, _Lost):
            self._disconnect()
            raise
        except Exception as exc:
            self._disconnect()
            raise _Lost(f"{type(exc).__name__}: {exc}") from None
        self._ray, self._actor = ray, actor
        self._where = {"cluster": self.address, **where}
        log.info("jobs run on the Ray cluster at %s (%s)", self.address, where)

    def _disconnect(self) -> None:
        from . import cluster

        self._ray = self._actor = None
        try:
            ray = cluster.ray_module()
            # Not cluster.disconnect(): after a lost connection Ray Client says it is not
            # initialized but keeps its context, and the next ray.init would be refused.
            ray.shutdown()
        except Exception as exc:  # a dead connection may fail to close; it is gone anyway
            log.warning("closing the Ray connection: %s", exc)

    def _call(self, fn, *args, **kw):
        """A Ray call; a failure of the connection or the actor becomes :class:`_Lost`."""
        try:
            return fn(*args, **kw)
        except Exception as exc:
            raise _Lost(f"{type(exc).__name__}: {exc}") from None

    # -- one job --------------------------------------------------------------------------
    def _forward(self, job):
        ray, actor = self._ray, self._actor
        inputs, fields, refs = collect_files(job)
        # Big inputs take a while to go: the heartbeat repeats this until the cluster answers.
        job.progress("send", 0, 1, None, None, self.address)
        try:
            names = list(fields)
            lacking = set(self._call(ray.get, actor.missing.remote(names), timeout=STALL))
            send = {n: fields[n] for n in names if n in lacking}
            request = {"id": job.id, "type": job.type, "params": job.params}
            ref = self._call(actor.run.remote, request, inputs, send, refs)
            final, results = self._follow(job, ref)
        except _Lost as exc:
            self._disconnect()
            if self.fallback:
                self.local = True
                nxt = "The next jobs run on this computer (until the worker restarts)"
            else:
                nxt = "The next job tries to connect again"
            raise RemoteError(
                P.REMOTE,
                f"lost the connection to the Ray cluster at {self.address} during the job "
                f"({exc}); the job was stopped. {nxt}",
            ) from None
        if final["type"] == P.ERROR:
            raise RemoteError(
                final.get("kind", P.INTERNAL), final.get("message", ""), final.get("traceback", "")
            )
        files = {}
        for key, (name, data) in results.items():
            path = job.path(name, "result")
            P.save_bytes(path, data)
            files[key] = str(path.resolve())
        info = dict(final.get("info") or {})
        info["ran_on"] = dict(self._where, device=info.get("device") or self._where["device"])
        return files, info

    def _follow(self, job, ref):
        """Poll the actor until the job ends; send its messages on; forward a cancel."""
        ray, actor = self._ray, self._actor
        cancelled_at = None
        while True:
            done = self._call(ray.wait, [ref], timeout=POLL)[0]
            for msg in self._call(ray.get, actor.messages.remote(), timeout=STALL):
                self._pass_on(job, msg)
            if done:
                return self._call(ray.get, ref, timeout=STALL)
            if job.cancel_event.is_set():
                if cancelled_at is None:
                    cancelled_at = time.monotonic()
                    self._call(actor.cancel.remote, job.id)
                elif time.monotonic() - cancelled_at > CANCEL_WAIT:
                    # The job may still run there: the next job gets a fresh actor.
                    try:
                        ray.kill(actor)
                    except Exception as exc:
                        log.warning("stopping the actor on the cluster: %s", exc)
                    self._actor = None
                    raise CancelledError(
                        f"the job was cancelled; the cluster at {self.address} did not "
                        f"confirm within {CANCEL_WAIT:.0f} s"
                    )

    def _pass_on(self, job, msg: dict) -> None:
        if msg.get("type") == P.PROGRESS:
            msg = dict(msg, elapsed=round(time.monotonic() - job.started, 3))
            job.last_progress, job.last_sent = msg, time.monotonic()
        elif msg.get("type") == P.LOG:
            log.info("cluster: %s", msg.get("message"))
        self.server.send(msg)


def collect_files(job) -> tuple[dict, dict, list]:
    """The files a request names, to send with it.

    Every param (but ``output``) that is a string, or a list of strings, naming an existing
    file counts: a relative name inside ``job_dir``, or an absolute path to a ``.lipsdf``
    (the only absolute paths a worker reads). Names the worker would refuse (out of the job
    folder) are not read here either; the cluster refuses them the same way.

    Returns
    -------
    inputs : dict
        ``{relative name: bytes}`` for files other than fields.
    fields : dict
        ``{<sha256>.lipsdf: bytes}``.
    refs : list
        ``(key, index or None, stored name)`` for each param that names a field.
    """
    inputs, fields, refs = {}, {}, []
    for key, value in job.params.items():
        if key == "output":
            continue
        items = value if isinstance(value, list) else [value]
        for i, name in enumerate(items):
            path = _local_file(job, key, name)
            if path is None:
                continue
            data = path.read_bytes()
            if path.suffix == ".lipsdf":
                stored = stored_name(data, ".lipsdf")
                fields[stored] = data
                refs.append((key, i if isinstance(value, list) else None, stored))
            else:
                inputs[name] = data
    return inputs, fields, refs


def _local_file(job, key: str, name) -> Path | None:
    from . import params as par

    if not isinstance(name, str) or not par.usable_path(name):
        return None
    if os.path.isabs(name):
        path = Path(name)
        return path if path.suffix == ".lipsdf" and path.is_file() else None
    try:
        path = job.path(name, key)
    except BadInputError:
        return None
    return path if path.is_file() else None


def _reason(exc: Exception, address: str) -> str:
    """A ClusterError's text without a repeated 'cannot reach ... at address:' prefix."""
    text = str(exc)
    prefix = f"cannot reach the Ray cluster at {address}: "
    return text[len(prefix) :] if text.startswith(prefix) else text
