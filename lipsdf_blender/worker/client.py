"""Talking to the worker from Blender (or any Python): no torch, no bpy.

>>> client = WorkerClient("/path/to/python")          # an interpreter with torch, numpy, igl
>>> client.start()["device"]["name"]                  # waits for the handshake
>>> job = client.submit("train", {"preset": "fast"}, job_dir=d, arrays={"vertices": V, "faces": F})
>>> result = client.wait(job, on_progress=print)      # blocking, for ``blender -b``
>>> field = result["files"]["field"]

In Blender's interface, call :meth:`WorkerClient.poll` from a timer instead of :meth:`wait`.
A worker that dies (even by ``kill -9``) turns every job it owed into an error of kind
``crashed`` carrying the last lines of its stderr; the next :meth:`submit` starts a fresh one.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from ..core.errors import CancelledError, LipSDFError
from . import protocol as P

#: The folder that holds the package, put on the worker's PYTHONPATH.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: ``<package>.worker``; the package folder's own name, so a renamed copy works too.
WORKER_MODULE = f"{PACKAGE_DIR.name}.worker"

STDERR_LINES = 200
CRASH_TAIL = 20


class WorkerError(LipSDFError):
    """A job ended with an error; ``kind`` is one of :data:`.protocol.ERROR_KINDS`."""

    def __init__(self, message: str, kind: str = P.INTERNAL, traceback: str = ""):
        super().__init__(message)
        self.kind, self.traceback = kind, traceback


class WorkerCrashedError(WorkerError):
    """The worker process died (or could not start) before the job ended."""


class JobCancelledError(WorkerError, CancelledError):
    """The job was cancelled."""


def raise_for(message: dict) -> None:
    """Raise the exception that an ``error`` message stands for."""
    kind = message.get("kind", P.INTERNAL)
    cls = {P.CRASHED: WorkerCrashedError, P.CANCELLED: JobCancelledError}.get(kind, WorkerError)
    raise cls(message.get("message", "unknown error"), kind, message.get("traceback", ""))


class WorkerClient:
    """Starts the worker process, queues jobs on it and reads its messages.

    Parameters
    ----------
    python : str, optional
        Interpreter that runs the worker (default: this one).
    env : dict, optional
        Extra environment variables for the worker.
    startup_timeout : float
        Seconds :meth:`start` waits for the handshake (importing torch can take a while).
    """

    def __init__(self, python: str | None = None, env: dict | None = None, startup_timeout=120.0):
        self.python = python or sys.executable
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.handshake: dict | None = None
        self._proc: subprocess.Popen | None = None
        self._messages: queue.Queue = queue.Queue()
        self._backlog: list[dict] = []
        self._finished: dict[str, dict] = {}
        self._pending: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._stderr: collections.deque = collections.deque(maxlen=STDERR_LINES)
        self._ids = itertools.count(1)
        self._handshake_event = threading.Event()
        self._closing: set[int] = set()

    # -- process --------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The worker's process id, or ``None`` when none runs."""
        return self._proc.pid if self.is_alive() else None

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, wait: bool = True) -> dict | None:
        """Start a worker (unless one runs); with ``wait``, return its handshake.

        Raises
        ------
        WorkerCrashedError
            The interpreter could not be run, or the worker died or was silent before its
            handshake (the message holds its stderr), or speaks another protocol version.
        """
        if not self.is_alive():
            self._spawn()
        if wait:
            self._wait_handshake()
        return self.handshake

    def _spawn(self) -> None:
        env = dict(os.environ)
        # Blender's own Python settings must not leak into another interpreter.
        for k in ("PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE"):
            env.pop(k, None)
        env.update(PYTHONPATH=str(PACKAGE_DIR.parent), PYTHONUNBUFFERED="1", PYTHONNOUSERSITE="1")
        env.update(PYTHONIOENCODING="utf-8")
        env.update(self.env)
        flags = getattr(subprocess, "CREATE_NO_WINDOW", 0) if os.name == "nt" else 0
        # Each process keeps its own log, so a crash report is never mixed with the next one.
        self._stderr = collections.deque(maxlen=STDERR_LINES)
        self.handshake = None
        self._handshake_event.clear()
        try:
            proc = subprocess.Popen(
                [self.python, "-u", "-m", WORKER_MODULE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                cwd=tempfile.gettempdir(),
                creationflags=flags,
            )
        except OSError as exc:
            raise WorkerCrashedError(
                f"cannot run the worker's Python {self.python!r}: {exc}; choose an interpreter "
                "with torch, numpy and libigl in the add-on's preferences",
                P.CRASHED,
            ) from None
        self._proc = proc
        log = self._stderr
        threading.Thread(target=self._read_stderr, args=(proc, log), daemon=True).start()
        threading.Thread(target=self._read_stdout, args=(proc, log), daemon=True).start()

    def _wait_handshake(self) -> None:
        proc = self._proc
        deadline = time.monotonic() + self.startup_timeout
        while not self._handshake_event.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
                time.sleep(0.1)  # let the stderr reader catch the last lines
                why = self._describe_exit(proc, self._stderr)
                raise WorkerCrashedError("the worker did not start: " + why, P.CRASHED)
        hs = self.handshake
        if hs.get("protocol") != P.PROTOCOL_VERSION:
            self.kill()
            raise WorkerCrashedError(
                f"the worker speaks protocol {hs.get('protocol')}, this add-on "
                f"{P.PROTOCOL_VERSION}; the add-on's files are mixed versions, reinstall it",
                P.PROTOCOL,
            )

    def _read_stderr(self, proc, log) -> None:
        for raw in proc.stderr:
            log.append(raw.decode("utf-8", errors="replace").rstrip("\n"))

    def _read_stdout(self, proc, log) -> None:
        for raw in proc.stdout:
            try:
                msg = P.decode(raw)
            except P.ProtocolError:
                log.append("[stdout] " + raw.decode("utf-8", errors="replace").rstrip())
                continue
            if msg["type"] == P.HANDSHAKE:
                self.handshake = msg
                self._handshake_event.set()
            elif msg["type"] in P.FINAL:
                with self._lock:
                    self._pending.pop(str(msg.get("id")), None)
            self._messages.put(msg)
        # stdout closed: the worker is gone (or going). Every job it owed becomes an error.
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        time.sleep(0.05)
        with self._lock:
            owed = [j for j, p in self._pending.items() if p is proc]
            for j in owed:
                del self._pending[j]
        if not owed:
            return
        message = "the worker process stopped during the job: " + self._describe_exit(proc, log)
        tail = "\n".join(list(log)[-CRASH_TAIL:])
        for j in owed:
            self._messages.put(
                {"type": P.ERROR, "id": j, "kind": P.CRASHED, "message": message, "traceback": tail}
            )

    def _describe_exit(self, proc, log) -> str:
        code = proc.returncode
        if code is None:
            why = "no handshake in time"
        elif code < 0:
            try:
                why = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                why = f"killed by signal {-code}"
        else:
            why = f"exit code {code}"
        tail = "\n".join(list(log)[-CRASH_TAIL:]) or "(nothing on stderr)"
        return f"{why}. Last lines of its log:\n{tail}"

    def stderr_tail(self, n: int = CRASH_TAIL) -> str:
        """The last ``n`` lines the worker wrote to stderr."""
        return "\n".join(list(self._stderr)[-n:])

    # -- jobs -----------------------------------------------------------------------------
    def submit(self, job_type: str, params: dict | None = None, job_dir=None, arrays=None) -> str:
        """Queue a job and return its id (starts a worker if none runs; does not block).

        ``arrays`` (a dict of numpy arrays) is written to ``job_dir/input.npz`` first and
        named as the job's ``input``; without ``job_dir`` a fresh temporary folder is used.
        """
        if job_type not in P.JOB_TYPES:
            raise WorkerError(f"unknown job type {job_type!r}", P.BAD_INPUT)
        params = dict(params or {})
        if job_dir is None:
            job_dir = tempfile.mkdtemp(prefix="lipsdf-job-")
        Path(job_dir).mkdir(parents=True, exist_ok=True)
        if arrays is not None:
            P.save_arrays(Path(job_dir) / "input.npz", **arrays)
            params.setdefault("input", "input.npz")
        if not self.is_alive():
            self.start(wait=False)
        job_id = str(next(self._ids))
        with self._lock:
            self._pending[job_id] = self._proc
        try:
            self._write(P.request(job_id, job_type, params, job_dir))
        except OSError:
            pass  # the worker died; the stdout reader reports the job as crashed
        return job_id

    def _write(self, message: dict) -> None:
        proc = self._proc
        proc.stdin.write(P.encode(message).encode("utf-8"))
        proc.stdin.flush()

    def cancel(self, job_id: str) -> None:
        """Ask the worker to stop a job (running or queued); its error arrives as a message."""
        if self.is_alive():
            try:
                self._write({"type": P.CANCEL, "id": str(job_id)})
            except OSError:
                pass

    def poll(self) -> list[dict]:
        """Every message that has arrived, without blocking (for Blender's timers)."""
        out, self._backlog = self._backlog, []
        while True:
            try:
                out.append(self._messages.get_nowait())
            except queue.Empty:
                return out

    def wait(self, job_id: str, on_progress=None, timeout: float | None = None) -> dict:
        """Block until a job ends; return its ``result`` message or raise its error.

        ``on_progress(message)`` is called for the job's progress and log messages. Messages
        of other jobs are kept for :meth:`poll` (and a later :meth:`wait`).

        Raises
        ------
        WorkerError
            The job's error (``JobCancelledError``, ``WorkerCrashedError``, ...).
        TimeoutError
            ``timeout`` seconds passed first.
        """
        job_id = str(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while job_id not in self._finished:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {job_id} did not end within {timeout} s")
            try:
                msg = self._messages.get(timeout=0.1 if left is None else min(left, 0.1))
            except queue.Empty:
                continue
            mid = str(msg.get("id"))
            if msg["type"] in P.FINAL:
                self._finished[mid] = msg
                if mid != job_id:
                    self._backlog.append(msg)
            elif mid == job_id:
                if on_progress is not None:
                    on_progress(msg)
            else:
                self._backlog.append(msg)
        msg = self._finished.pop(job_id)
        if msg["type"] == P.ERROR:
            raise_for(msg)
        return msg

    def run(self, job_type: str, params=None, job_dir=None, arrays=None, **kw) -> dict:
        """:meth:`submit` then :meth:`wait`."""
        return self.wait(self.submit(job_type, params, job_dir, arrays), **kw)

    # -- ending ---------------------------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit (cancelling what runs); kill it if it does not."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._write({"type": P.SHUTDOWN, "id": None})
                proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """Stop the worker at once."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> WorkerClient:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
