"""What one operator run asks of the worker, and the object that drives it; no bpy here.

An operator turns the selected objects into :class:`Source` records (plain arrays), picks a
*plan* (``plan_train``, ``plan_remesh``, ``plan_offset``, ``plan_csg``) and hands it to a
:class:`Job`. A plan is a generator: it yields :class:`Request` objects, receives each
request's ``result`` message and finally returns an :class:`Outcome` holding the trained
field files (as bytes) and the result meshes (as arrays). Only after the whole plan succeeded
does the operator touch the scene, so a failed or cancelled job leaves nothing half-made.

The same :class:`Job` runs in two ways: :meth:`Job.poll` from a modal operator's timer (the
interface stays responsive) and :meth:`Job.run`, which blocks (``blender -b``, scripts).

>>> job = Job(client, plan_remesh([source], Settings(preset="fast")))
>>> outcome = job.run(on_progress=lambda status: print(status.text()))
>>> vertices, faces, level = outcome.meshes["Suzanne"][0]
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import BadInputError, CancelledError, LipSDFError
from ..core.inputs.geometry import Geometry
from ..core.training.presets import DEFAULT_PRESET
from ..worker import protocol as P
from ..worker.client import WorkerClient, WorkerError, raise_for

KINDS = ("mesh", "points", "curve")
#: Seconds a cancelled job may take to answer before its worker is stopped.
CANCEL_GRACE = 5.0


@dataclass
class Settings:
    """Training and extraction settings of one operator run (copied from its properties).

    ``mode`` is ``auto`` (unsigned for curves, signed otherwise), ``signed`` or ``unsigned``;
    ``thickness`` (object units) is the half-width of an unsigned field's surface;
    ``resolution`` 0 means the preset's; ``detail`` takes surfaces from the input's exact
    distances near it; ``sharp`` keeps creases sharp; ``faces`` is a target face count
    (0: all); ``normals`` (point clouds) is ``auto`` (the cloud's own when it has them) or
    ``estimate``; ``noise`` (point clouds) is their noise level in object units, ``None``:
    estimated; ``warm_start``: a stale object's stored field starts its retraining
    (:mod:`..core.training.warm`); ``overrides`` are
    :class:`~..core.training.presets.Preset` fields (``steps``, ``width``,
    ...) for scripts and tests.
    """

    preset: str = DEFAULT_PRESET
    mode: str = "auto"
    thickness: float = 0.01
    resolution: int = 0
    seed: int = 0
    detail: bool = True
    sharp: bool = True
    faces: int = 0
    normals: str = "auto"
    noise: float | None = None
    device: str = "auto"
    warm_start: bool = True
    overrides: dict = field(default_factory=dict)

    def mode_for(self, kind: str) -> str:
        if self.mode == "auto":
            return "unsigned" if kind == "curve" else "signed"
        return self.mode

    def cloud_for(self, kind: str) -> tuple[str, float | None]:
        """``(normals, noise)`` as a field of this kind is trained: meshes and curves have
        no choices (``("auto", None)``)."""
        if kind != "points":
            return "auto", None
        return self.normals, None if self.noise is None else float(self.noise)


@dataclass
class Source:
    """One input object as arrays in its own (local) coordinates.

    ``arrays`` holds ``vertices`` and, by ``kind``, ``faces`` (mesh), ``normals`` (points,
    optional) or ``edges`` (curve). ``field_file`` is an up-to-date ``.lipsdf`` for it, or
    ``None`` when it must be trained first; ``init_file`` is the stale field of its previous
    geometry (a warm start), or ``None``. ``matrix`` is its object-to-world 4x4 matrix.
    """

    name: str
    kind: str
    arrays: dict
    field_file: str | None = None
    matrix: np.ndarray | None = None
    init_file: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise BadInputError(f"{self.name}: unknown geometry kind {self.kind!r}")

    @property
    def input_hash(self) -> str:
        return geometry_hash(self.kind, self.arrays)


def geometry_hash(kind: str, arrays: dict) -> str:
    """The geometry's content hash (as a field's record keeps it): tells whether it is stale."""
    return Geometry(kind, **arrays).content_hash()


@dataclass
class Request:
    """One worker job of a plan; ``label`` is what the user reads in the progress bar."""

    type: str
    params: dict
    arrays: dict | None = None
    label: str = ""


@dataclass
class Trained:
    """A field trained during the job: the ``.lipsdf`` bytes and what the worker said."""

    data: bytes
    info: dict
    input_hash: str
    kind: str
    mode: str
    thickness: float | None
    normals: str = "auto"
    noise: float | None = None

    @property
    def summary(self) -> str:
        """What training did to a point cloud, in one line ("" for meshes and curves)."""
        return str(self.info.get("summary") or "")

    @property
    def warm(self) -> str:
        """Whether it started from the previous field, in one line ("" when not asked)."""
        return warm_summary(self.info.get("warm_start"))


def warm_summary(ws: dict | None) -> str:
    """One line on a training's warm start (a result's ``info["warm_start"]``), "" for none.

    >>> warm_summary({"used": True, "steps": 1050, "samples": 200, "relabelled": 6})
    'warm start from the previous field: 1050 steps, 3 % relabelled'
    """
    if not isinstance(ws, dict):
        return ""
    if not ws.get("used"):
        return f"trained from scratch: {ws.get('reason') or 'the previous field did not fit'}"
    text = f"warm start from the previous field: {int(ws.get('steps') or 0)} steps"
    samples, again = ws.get("samples"), ws.get("relabelled")
    if ws.get("labels") == "recomputed":
        return text + ", all samples labelled"
    if samples and again is not None:
        share = 100.0 * again / samples
        text += f", {share:.0f} % relabelled" if share >= 1 else f", {share:.1f} % relabelled"
    return text


@dataclass
class Outcome:
    """What a finished plan hands back: trained fields and result meshes, by source name.

    ``meshes[name]`` is a list of ``(vertices (n,3) float64, faces (m,3) int64, level)``;
    CSG results are stored under the name :data:`CSG_RESULT`.
    """

    trained: dict[str, Trained] = field(default_factory=dict)
    meshes: dict[str, list] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: The field tools' results by name: the arrays of their result file and their ``info``.
    arrays: dict[str, dict] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)


CSG_RESULT = "<csg>"
Plan = Generator[Request, dict, Outcome]


# -- plans --------------------------------------------------------------------------------------
def _train_request(src: Source, s: Settings) -> Request:
    mode = s.mode_for(src.kind)
    params = {
        "kind": src.kind,
        "preset": s.preset,
        "mode": mode,
        "seed": int(s.seed),
        "device": s.device,
        "overrides": dict(s.overrides),
    }
    if mode == "unsigned":
        params["thickness"] = float(s.thickness)
    if src.kind == "points":
        params["normals"], params["noise"] = s.cloud_for(src.kind)
    label = f"{src.name}: training"
    if s.warm_start and src.init_file is not None:
        params["init"] = str(src.init_file)
        label = f"{src.name}: retraining from the previous field"
    return Request(P.TRAIN, params, dict(src.arrays), label)


def _fields(sources: list[Source], s: Settings, outcome: Outcome):
    """Sub-plan: train every source without an up-to-date field; returns name -> file."""
    files = {}
    for src in sources:
        if src.field_file is not None:
            files[src.name] = src.field_file
            continue
        result = yield _train_request(src, s)
        path = result["files"]["field"]
        mode = s.mode_for(src.kind)
        normals, noise = s.cloud_for(src.kind)
        outcome.trained[src.name] = Trained(
            data=Path(path).read_bytes(),
            info=dict(result.get("info") or {}),
            input_hash=src.input_hash,
            kind=src.kind,
            mode=mode,
            thickness=float(s.thickness) if mode == "unsigned" else None,
            normals=normals,
            noise=noise,
        )
        files[src.name] = path
    return files


def _tool_params(s: Settings, **params) -> dict:
    """What every job that remeshes takes from the settings."""
    params["detail"] = bool(s.detail)
    params["sharp"] = bool(s.sharp)
    if s.resolution:
        params["resolution"] = int(s.resolution)
    return params


def _extract_params(s: Settings, **params) -> dict:
    params["device"] = s.device
    params["faces"] = int(s.faces)
    return _tool_params(s, **params)


def plan_train(sources: list[Source], s: Settings) -> Plan:
    """Train a field for every source (also those that have one)."""
    outcome = Outcome()
    retrain = [Source(x.name, x.kind, x.arrays, init_file=x.init_file) for x in sources]
    yield from _fields(retrain, s, outcome)
    return outcome


def plan_remesh(sources: list[Source], s: Settings) -> Plan:
    """Train where needed, then extract every field's zero level set."""
    outcome = Outcome()
    files = yield from _fields(sources, s, outcome)
    for src in sources:
        params = _extract_params(s, field=files[src.name], levels=[0.0])
        result = yield Request(P.EXTRACT, params, label=f"{src.name}: remeshing")
        outcome.meshes[src.name] = P.load_meshes(result["files"]["meshes"])
    return outcome


def plan_offset(sources: list[Source], s: Settings, distances, exact: bool = True) -> Plan:
    """Train where needed, then the surfaces at ``distances`` (object units) of every field."""
    distances = [float(d) for d in distances]
    if not distances:
        raise BadInputError("give at least one offset distance")
    outcome = Outcome()
    files = yield from _fields(sources, s, outcome)
    for src in sources:
        params = _extract_params(s, field=files[src.name], distances=distances, exact=exact)
        result = yield Request(P.OFFSET, params, label=f"{src.name}: offsetting")
        outcome.meshes[src.name] = P.load_meshes(result["files"]["meshes"])
    return outcome


CSG_OPS = ("union", "intersection", "difference")


def plan_csg(sources: list[Source], s: Settings, op: str, blend: float = 0.0) -> Plan:
    """Train where needed, then combine the fields in world space (``sources[0]`` first)."""
    if op not in CSG_OPS:
        raise BadInputError(f"unknown CSG operation {op!r}; use one of {', '.join(CSG_OPS)}")
    if len(sources) < 2:
        raise BadInputError("CSG needs two or more objects: the active one and another")
    outcome = Outcome()
    files = yield from _fields(sources, s, outcome)
    matrices = [np.eye(4) if x.matrix is None else np.asarray(x.matrix) for x in sources]
    params = _extract_params(
        s,
        op=op,
        fields=[files[x.name] for x in sources],
        blend=float(blend),
        matrices=[m.tolist() for m in matrices],
    )
    result = yield Request(P.CSG, params, label=f"{sources[0].name}: {op}")
    outcome.meshes[CSG_RESULT] = P.load_meshes(result["files"]["meshes"])
    return outcome


def _collect(outcome: Outcome, key: str, result: dict, file: str) -> None:
    """Keep a tool's result arrays (its ``file``) and ``info`` under ``key``."""
    outcome.arrays[key] = P.load_arrays(result["files"][file])
    outcome.info[key] = dict(result.get("info") or {})


def _matrix(src: Source) -> list:
    return (np.eye(4) if src.matrix is None else np.asarray(src.matrix, dtype=float)).tolist()


def plan_points(sources: list[Source], s: Settings, n: int, level: float = 0.0) -> Plan:
    """Train where needed, then ``n`` evenly spread points (and normals) on each field's level
    set ``level`` (object units), in the object's own frame: ``arrays[name]``."""
    outcome = Outcome()
    files = yield from _fields(sources, s, outcome)
    for src in sources:
        params = {"field": files[src.name], "n": int(n), "level": float(level), "seed": s.seed}
        if s.resolution:
            params["resolution"] = int(s.resolution)
        result = yield Request(P.SAMPLE, params, label=f"{src.name}: placing points")
        _collect(outcome, src.name, result, "points")
    return outcome


def plan_project(
    source: Source, targets: dict, s: Settings, level: float = 0.0, iterations: int = 100
) -> Plan:
    """Train ``source`` where needed, then move every target's points (world space, ``targets``:
    name -> (n, 3)) onto its field's level set ``level`` (world units): ``arrays[target]``."""
    outcome = Outcome()
    files = yield from _fields([source], s, outcome)
    for name, points in targets.items():
        params = {
            "field": files[source.name],
            "points": "input.npz",
            "level": float(level),
            "iterations": int(iterations),
            "matrix": _matrix(source),
        }
        arrays = {"points": np.asarray(points, dtype=np.float64)}
        result = yield Request(P.PROJECT, params, arrays, f"{name}: projecting onto {source.name}")
        _collect(outcome, name, result, "points")
    return outcome


def plan_query(source: Source, targets: dict, s: Settings, exact: bool = True) -> Plan:
    """Train ``source`` where needed, then its signed distance and gradient at every target's
    points (world space, ``targets``: name -> (n, 3)), in world units: ``arrays[target]``."""
    outcome = Outcome()
    files = yield from _fields([source], s, outcome)
    for name, points in targets.items():
        params = _tool_params(
            s, field=files[source.name], points="input.npz", matrix=_matrix(source)
        )
        params["exact"] = bool(exact)
        arrays = {"points": np.asarray(points, dtype=np.float64)}
        result = yield Request(P.QUERY, params, arrays, f"{name}: distance to {source.name}")
        _collect(outcome, name, result, "values")
    return outcome


def plan_thickness(
    sources: list[Source], points: dict, s: Settings, exact: bool = True, gap: float = 0.0
) -> Plan:
    """Train where needed, then the wall thickness of each source at ``points[name]`` (its own
    vertices, object units; balls may stand ``gap`` off the surface, see
    :func:`..core.tools.printing.thickness`): ``arrays[name]["thickness"]``."""
    outcome = Outcome()
    files = yield from _fields(sources, s, outcome)
    for src in sources:
        params = _tool_params(s, field=files[src.name], points="input.npz", exact=bool(exact))
        params["gap"] = float(gap)
        arrays = {"points": np.asarray(points[src.name], dtype=np.float64)}
        result = yield Request(P.THICKNESS, params, arrays, f"{src.name}: measuring walls")
        _collect(outcome, src.name, result, "values")
    return outcome


def plan_hollow(sources: list[Source], s: Settings, wall: float) -> Plan:
    """Train where needed, then each object's shell of wall thickness ``wall`` (object units):
    ``meshes[name]`` (one closed mesh) and ``info[name]`` (volumes)."""
    wall = float(wall)
    if not wall > 0:
        raise BadInputError(f"the wall thickness must be positive, got {wall:g}")
    outcome = Outcome()
    files = yield from _fields(sources, s, outcome)
    for src in sources:
        params = _tool_params(s, field=files[src.name], wall=wall, faces=int(s.faces))
        result = yield Request(P.HOLLOW, params, label=f"{src.name}: hollowing")
        outcome.meshes[src.name] = P.load_meshes(result["files"]["meshes"])
        outcome.info[src.name] = dict(result.get("info") or {})
    return outcome


def plan_slice(source: Source, s: Settings, plane, pixels, spacing: float) -> Plan:
    """Train where needed, then the field on a plane (``plane``: 4x4, the plane's [-1, 1]^2 to
    world) as pictures of ``pixels`` = (w, h): ``arrays[name]``."""
    outcome = Outcome()
    files = yield from _fields([source], s, outcome)
    params = {
        "field": files[source.name],
        "matrix": _matrix(source),
        "plane": np.asarray(plane, dtype=float).tolist(),
        "pixels": [int(pixels[0]), int(pixels[1])],
        "spacing": float(spacing),
    }
    result = yield Request(P.SLICE, params, label=f"{source.name}: slicing")
    _collect(outcome, source.name, result, "image")
    return outcome


PREVIEW = "<preview>"


def plan_render(sources: list[Source], s: Settings, camera: dict, op="union", blend=0.0) -> Plan:
    """Train where needed, then sphere-trace the fields (combined by ``op``, world space) from
    ``camera`` (see the protocol's ``render``): ``arrays[PREVIEW]``."""
    if op not in CSG_OPS:
        raise BadInputError(f"unknown CSG operation {op!r}; use one of {', '.join(CSG_OPS)}")
    outcome = Outcome()
    files = yield from _fields(sources, s, outcome)
    params = {
        "fields": [files[x.name] for x in sources],
        "matrices": [_matrix(x) for x in sources],
        "op": op,
        "blend": float(blend),
        "camera": camera,
    }
    label = f"{sources[0].name}: sphere tracing" if len(sources) == 1 else "sphere tracing"
    result = yield Request(P.RENDER, params, label=label)
    _collect(outcome, PREVIEW, result, "image")
    return outcome


def plan_grid(sources: list[Source], s: Settings, voxels: dict, band: float, exact=True) -> Plan:
    """Train where needed, then each field's narrow band on a grid of ``voxels[name]`` (object
    units), ``band`` voxels wide: ``arrays[name]`` (``ijk``, ``values``, ``voxel``)."""
    outcome = Outcome()
    files = yield from _fields(sources, s, outcome)
    for src in sources:
        voxel = float(voxels[src.name])
        params = _tool_params(
            s, field=files[src.name], voxel=voxel, band=float(band), exact=bool(exact)
        )
        result = yield Request(P.GRID, params, label=f"{src.name}: sampling the grid")
        _collect(outcome, src.name, result, "grid")
    return outcome


def count_requests(sources: list[Source], per_source: int = 1, shared: int = 0) -> int:
    """How many worker jobs a plan will run: for the progress bar's overall fraction."""
    return sum(x.field_file is None for x in sources) + per_source * len(sources) + shared


# -- running a plan ----------------------------------------------------------------------------
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
        inner = self.step / self.total if self.total else 0.0
        return min(1.0, (self.stage + min(inner, 1.0)) / max(self.stages, 1))

    def text(self) -> str:
        parts = [self.label]
        if self.total:
            parts.append(f"{self.phase} {self.step}/{self.total}")
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
    plan : generator from one of the ``plan_*`` functions
    stages : int
        How many requests the plan will make (:func:`count_requests`), for the overall bar.
    """

    def __init__(self, client: WorkerClient, plan: Plan, stages: int = 1):
        self.client = client
        self.plan = plan
        self.status = Status(stages=max(1, stages))
        self.state = RUNNING
        self.outcome: Outcome | None = None
        self.error: LipSDFError | None = None
        self.logs: list[str] = []
        self._current: str | None = None
        self._cancel_at: float | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="lipsdf-job-"))
        self._count = 0
        self._started = False

    @property
    def done(self) -> bool:
        return self.state != RUNNING

    def start(self) -> None:
        """Submit the plan's first request (starts the worker if needed; does not block)."""
        if not self._started:
            self._started = True
            self._advance(None)

    def _advance(self, result: dict | None) -> None:
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

    def run(self, on_progress: Callable[[Status], None] | None = None, interval=0.1) -> Outcome:
        """Block until the job ends; return its outcome or raise its error.

        Ctrl+C cancels the job (and is raised again once it has stopped).
        """
        try:
            while not self.poll():
                if on_progress is not None:
                    on_progress(self.status)
                time.sleep(interval)
        except KeyboardInterrupt:
            self.cancel()
            while not self.poll():
                time.sleep(interval)
            raise
        return self.result()

    def result(self) -> Outcome:
        """The outcome of a finished job, or its error raised."""
        if self.state == DONE:
            return self.outcome
        if self.state == CANCELLED:
            raise CancelledError("the LipSDF job was cancelled; nothing was changed")
        if self.state == FAILED:
            raise self.error
        raise LipSDFError("the job has not finished")

    def _fail(self, exc: LipSDFError) -> None:
        self.error = exc
        self._end(FAILED)

    def _end(self, state: str) -> None:
        self.state = state
        self._current = None
        self.plan.close()
        shutil.rmtree(self._dir, ignore_errors=True)
