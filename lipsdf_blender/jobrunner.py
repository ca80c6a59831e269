"""The request driver: runs a plan's worker requests one after another; no bpy, no torch.

A *plan* is a generator: it yields :class:`Request` objects, receives each request's
``result`` message and finally returns what it made (the Blender add-on's plans, in
:mod:`.blender.plans`, return an ``Outcome`` of field files and meshes). A :class:`Job` drives
one plan on a :class:`~.worker.client.WorkerClient`: it submits each request, follows its
progress in a :class:`Status`, cancels, and hands back the plan's return value or its error.

The same :class:`Job` runs in two ways: :meth:`Job.poll` from a modal operator's timer (the
interface stays responsive) and :meth:`Job.run`, which blocks (``blender -b``, scripts).

>>> from lipsdf_blender.blender.plans.build import plan_remesh
>>> job = Job(client, plan_remesh([source], Settings(preset="fast")))
>>> outcome = job.run(on_progress=lambda status: print(status.text()))
>>> vertices, faces, level = outcome.meshes["Suzanne"][0]

A plan may also yield a :class:`Delivery` between requests: part of its outcome that is ready
before the plan ends (the remesh of a closed mesh, made before its field is trained, and a
coarse preview of it before that, ``final=False``). The job
keeps it for :meth:`Job.take_deliveries` (the operator builds it at once), submits the plan's
next request in the same step, and goes on; the plan's return value is still the outcome.

It is not Blender code, so it lives outside ``blender/``: it may import the worker's client
and protocol, never ``bpy`` and never torch.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core.errors import CancelledError, LipSDFError
from .worker import protocol as P
from .worker.client import WorkerClient, WorkerError, raise_for

#: Seconds a cancelled job may take to answer before its worker is stopped.
CANCEL_GRACE = 5.0


@dataclass
class Request:
    """One worker job of a plan; ``label`` is what the user reads in the progress bar."""

    type: str
    params: dict
    arrays: dict | None = None
    label: str = ""


@dataclass
class Delivery:
    """What a plan yields when part of its outcome is ready before it ends: ``outcome`` (the
    plan's own, so far) and the ``keys`` (source names) whose results in it are ready.
    ``final`` false: a coarse preview of them, which a later delivery (or the plan's
    outcome) of the same keys replaces."""

    outcome: Any
    keys: list
    final: bool = True


#: A plan: yields requests (and deliveries), is sent each request's ``result`` message,
#: returns what it made.
Plan = Generator["Request | Delivery", dict, Any]


@dataclass
class Status:
    """Where a job stands, for the progress bar and the status bar."""

    label: str = "starting the worker"
    phase: str = ""
    step: int = 0
    total: int = 0
    loss: float | None = None
    eta: float | None = None
    device: str = ""
    stage: int = 0
    stages: int = 1

    @property
    def fraction(self) -> float:
        """The whole job's progress in [0, 1]: finished requests plus the running one's share."""
        inner = self.step / self.total if self.total else 0.0
        return min(1.0, (self.stage + min(inner, 1.0)) / max(self.stages, 1))

    def text(self) -> str:
        """One line: the request's label, its phase and step, loss, ETA and device."""
        parts = [self.label]
        if self.total and self.step:
            parts.append(f"{self.phase} {self.step}/{self.total}")
        elif self.phase:  # the phase is named from its start (label, train, extract, ...)
            parts.append(self.phase)
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4g}")
        if self.eta is not None:
            parts.append(f"ETA {self.eta:.0f} s")
        if self.device:
            parts.append(self.device)
        return " · ".join(parts)


RUNNING, DONE, FAILED, CANCELLED = "running", "done", "failed", "cancelled"


class Job:
    """Drives one plan on a worker: submit, follow progress, cancel, collect the outcome.

    Parameters
    ----------
    client : WorkerClient
    plan : generator
        A plan (for the add-on, one of the ``plan_*`` functions of :mod:`.blender.plans`).
    stages : int
        How many requests the plan will make, for the overall bar.
    """

    def __init__(self, client: WorkerClient, plan: Plan, stages: int = 1):
        """A job not yet started: :meth:`start` or :meth:`poll` submits its first request."""
        self.client = client
        self.plan = plan
        self.status = Status(stages=max(1, stages))
        self.state = RUNNING
        self.outcome: Any = None
        self.error: LipSDFError | None = None
        self.logs: list[str] = []
        self.deliveries: list[Delivery] = []
        self._current: str | None = None
        self._cancel_at: float | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="lipsdf-job-"))
        self._count = 0
        self._started = False

    @property
    def done(self) -> bool:
        """Has the job ended (done, failed or cancelled)?"""
        return self.state != RUNNING

    def start(self) -> None:
        """Submit the plan's first request (starts the worker if needed; does not block)."""
        if not self._started:
            self._started = True
            self._advance(None)

    def _advance(self, result: dict | None) -> None:
        """Send ``result`` to the plan (``None``: start it) and submit its next request;
        the plan's return value ends the job as done, its error as failed."""
        while True:
            try:
                request = self.plan.send(result) if result is not None else next(self.plan)
            except StopIteration as stop:
                self.outcome = stop.value
                self._end(DONE)
                return
            except LipSDFError as exc:
                self._fail(exc)
                return
            except OSError as exc:
                self._fail(LipSDFError(f"cannot read the worker's result: {exc}"))
                return
            if not isinstance(request, Delivery):
                break
            self.deliveries.append(request)  # kept; the plan goes on to its next request
            result = None
        if request.label:
            self.status.label = request.label
        self.status.stage = min(self._count, self.status.stages - 1)
        self.status.step = self.status.total = 0
        self.status.loss = self.status.eta = None
        sub = self._dir / str(self._count)
        self._count += 1
        try:
            self._current = self.client.submit(request.type, request.params, sub, request.arrays)
        except LipSDFError as exc:
            self._fail(exc)

    def poll(self) -> bool:
        """Handle every message that arrived; ``True`` once the job has ended."""
        if not self._started:
            self.start()
        if self.done:
            return True
        for msg in self.client.poll():
            if self.done:
                break
            if str(msg.get("id")) != self._current:
                continue  # a handshake, or a message of an earlier, abandoned job
            kind = msg["type"]
            if kind == P.PROGRESS:
                st = self.status
                st.phase = msg.get("phase") or ""
                st.step, st.total = int(msg.get("step") or 0), int(msg.get("total") or 0)
                st.loss, st.eta = msg.get("loss"), msg.get("eta")
                st.device = msg.get("device") or st.device
            elif kind == P.LOG:
                self.logs.append(str(msg.get("message")))
            elif kind == P.RESULT:
                if self._cancel_at is not None:
                    self._end(CANCELLED)
                else:
                    self._advance(msg)
            elif kind == P.ERROR:
                if self._cancel_at is not None or msg.get("kind") == P.CANCELLED:
                    self._end(CANCELLED)
                else:
                    try:
                        raise_for(msg)
                    except WorkerError as exc:
                        self._fail(exc)
        if not self.done and self._cancel_at is not None:
            if time.monotonic() - self._cancel_at > CANCEL_GRACE:
                self.client.kill()  # the worker did not answer: stop it, the next job restarts it
                self._end(CANCELLED)
        return self.done

    def take_deliveries(self) -> list[Delivery]:
        """The deliveries the plan made since the last call (oldest first), handed over once."""
        out, self.deliveries = self.deliveries, []
        return out

    def cancel(self) -> None:
        """Ask the running request to stop; the job ends as ``cancelled`` within a second."""
        if self.done:
            return
        if self._cancel_at is None:
            self._cancel_at = time.monotonic()
            self.status.label = "cancelling"
        if self._current is not None:
            self.client.cancel(self._current)
        else:
            self._end(CANCELLED)

    def run(
        self,
        on_progress: Callable[[Status], None] | None = None,
        interval=0.1,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> Any:
        """Block until the job ends; return its outcome or raise its error.

        ``on_delivery`` gets each :class:`Delivery` as soon as it arrives (without it they
        stay in :attr:`deliveries`). Ctrl+C cancels the job (and is raised again once it has
        stopped).
        """
        try:
            while True:
                ended = self.poll()
                if on_delivery is not None:
                    for delivery in self.take_deliveries():
                        on_delivery(delivery)
                if ended:
                    break
                if on_progress is not None:
                    on_progress(self.status)
                time.sleep(interval)
        except KeyboardInterrupt:
            self.cancel()
            while not self.poll():
                time.sleep(interval)
            raise
        return self.result()

    def result(self) -> Any:
        """The outcome of a finished job, or its error raised."""
        if self.state == DONE:
            return self.outcome
        if self.state == CANCELLED:
            raise CancelledError("the LipSDF job was cancelled; nothing was changed")
        if self.state == FAILED:
            raise self.error
        raise LipSDFError("the job has not finished")

    def _fail(self, exc: LipSDFError) -> None:
        """End the job as failed with ``exc``."""
        self.error = exc
        self._end(FAILED)

    def _end(self, state: str) -> None:
        """End the job in ``state``: close the plan and remove the job's folder."""
        self.state = state
        self._current = None
        self.plan.close()
        shutil.rmtree(self._dir, ignore_errors=True)
