"""The worker's loop: read requests, run jobs one at a time, answer on the protocol stream.

Three threads besides the one that runs jobs:

- the *reader* reads stdin, queues jobs and acts on ``cancel`` and ``shutdown`` at once (a
  running job polls a :class:`threading.Event` through the core's cancel hooks); end of
  stdin means the parent is gone, and the worker exits;
- the *watchdog* exits the process when the parent process changes (the parent was killed
  and this process was re-parented), in case stdin stays open because a grandchild holds it;
- the *heartbeat* repeats the last progress message so the client hears from a running job at
  least once a second, even in phases the core reports rarely (labelling).

A request's ``type`` picks its handler in :data:`.jobs.HANDLERS`; what a handler raises is
sent as an ``error`` message of the kind :func:`.running.error_kind` gives. See
:mod:`.protocol` for the messages.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import platform
import queue
import sys
import threading
import time
import traceback

import numpy as np
import torch

from .. import VERSION
from ..core.device import describe, describe_why_cpu, pick_device
from ..core.errors import BadInputError
from . import protocol as P
from .jobs import HANDLERS
from .running import Job, OutOfMemory, Shared, error_kind

log = logging.getLogger("lipsdf.worker")

#: Seconds between progress messages at most (the protocol promises at least one a second).
HEARTBEAT = 0.9
#: Seconds the worker waits for a running job to notice a cancel before it exits anyway.
EXIT_GRACE = 2.0


def dist_version(dist: str) -> str:
    """The installed version of the distribution ``dist``, or ``unknown``."""
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
        "igl": dist_version("libigl"),
        "lipsdf": VERSION,
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


class Server:
    """Serves requests from ``stdin`` (binary, JSON lines) and answers on ``out`` (text).

    ``forwarder`` is ``None`` (jobs run here) unless set to a :class:`.remote.Forwarder`
    (``__main__`` does when the environment names a Ray cluster), which then runs each job.
    """

    def __init__(self, stdin, out, parent_pid: int | None = None, share=None):
        self.stdin, self.out = stdin, out
        self.share = share  # a core.threads.FairShare, or None: threads stay as they are
        self.parent_pid = os.getppid() if parent_pid is None else parent_pid
        self.jobs: queue.Queue = queue.Queue()
        # The field cache, the exact surfaces and the out-of-memory test hook, kept between
        # jobs (see .running).
        self.shared = Shared()
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._current: Job | None = None
        self._queued: set[str] = set()  # ids waiting in the queue
        self._dropped: set[str] = set()  # queued jobs already answered as cancelled
        self._stopping = threading.Event()
        self.forwarder = None

    # -- output ---------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        """Write one protocol message; a closed stdout ends the process."""
        line = P.encode(message)
        with self._send_lock:
            try:
                self.out.write(line)
                self.out.flush()
            except (BrokenPipeError, OSError, ValueError):
                # The parent closed our stdout: nobody is listening any more.
                os._exit(0)

    def error(self, job_id, kind: str, message: str, tb: str = "") -> None:
        """Send an ``error`` message."""
        self.send(
            {"type": P.ERROR, "id": job_id, "kind": kind, "message": message, "traceback": tb}
        )

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
            self.cancel(job_id)
        elif kind == P.SHUTDOWN:
            return False
        else:
            self.mark_queued(job_id)
            self.jobs.put(msg)
        return True

    def mark_queued(self, job_id: str) -> None:
        """Count ``job_id`` as queued, so a cancel that comes before :meth:`run` is not lost
        (:meth:`accept` does this for the jobs it queues)."""
        with self._state_lock:
            self._queued.add(job_id)

    def cancel(self, job_id: str) -> None:
        """Cancel a job: the running one is asked to stop, a queued one is answered as
        cancelled at once (and not started); an unknown or finished id is ignored."""
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
        """Start the threads, send the handshake and run the queued jobs until the end."""
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

    def make_job(self, request: dict) -> Job:
        """The :class:`~.running.Job` for a request, sending its messages through this
        server and sharing its caches (raises ``BadInputError`` for a malformed one)."""
        return Job(request, send=self.send, share=self.share, shared=self.shared)

    def run(self, request: dict) -> None:
        """Run one request to its final message (``result`` or ``error``), unless it was
        cancelled while queued (answered already)."""
        job_id = str(request.get("id"))
        try:
            job, failure = self.make_job(request), None
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
            handler = HANDLERS.get(job.type)
            if handler is None:
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
            if isinstance(exc, P.RemoteError):  # already the protocol's kind and words
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
