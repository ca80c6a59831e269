"""The records every plan shares, and the training every plan starts with; no bpy here.

:class:`Settings` (an operator's properties), :class:`Source` (an object as arrays),
:class:`Trained` and :class:`Outcome` (what a plan hands back); :func:`train_missing` (the
sub-plan that trains every source without an up-to-date field), :func:`remeshed_first` and
:func:`exact_request` (a closed mesh's remesh before its training) and the params every job
that remeshes a field takes from the settings (:func:`remesh_params`).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...core.errors import BadInputError
from ...core.inputs.geometry import Geometry, is_closed
from ...core.training.presets import DEFAULT_PRESET, PREVIEW_RESOLUTION, resolution_for
from ...jobrunner import Request
from ...worker import protocol as P

KINDS = ("mesh", "points", "curve")
CSG_OPS = ("union", "intersection", "difference")


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
    (:mod:`...core.training.warm`); ``overrides`` are
    :class:`~...core.training.presets.Preset` fields (``steps``, ``width``,
    ...) for scripts and tests; ``preview`` is the resolution of the coarse preview a mesh's
    remesh shows first (:func:`preview_request`; 0: none).
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
    preview: int = PREVIEW_RESOLUTION

    def mode_for(self, kind: str) -> str:
        """The field's mode for geometry of this kind (``auto``: unsigned for curves)."""
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
        """Refuse a kind the worker does not train (:class:`BadInputError`)."""
        if self.kind not in KINDS:
            raise BadInputError(f"{self.name}: unknown geometry kind {self.kind!r}")

    @property
    def input_hash(self) -> str:
        """The content hash of its geometry (see :func:`geometry_hash`)."""
        return geometry_hash(self.kind, self.arrays)

    @property
    def world_matrix(self) -> list:
        """Its object-to-world matrix as nested lists (the identity when not given)."""
        return (np.eye(4) if self.matrix is None else np.asarray(self.matrix, dtype=float)).tolist()


def geometry_hash(kind: str, arrays: dict) -> str:
    """The geometry's content hash (as a field's record keeps it): tells whether it is stale."""
    return Geometry(kind, **arrays).content_hash()


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

    ``meshes[name]`` is a list of ``(vertices (n,3) float64, faces (m,3) int64, level)``
    (the CSG result under :data:`.build.CSG_RESULT`); ``arrays[name]`` and ``info[name]``
    are a field tool's result arrays (its result file) and its ``info``.
    """

    trained: dict[str, Trained] = field(default_factory=dict)
    meshes: dict[str, list] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    arrays: dict[str, dict] = field(default_factory=dict)
    info: dict[str, dict] = field(default_factory=dict)

    def keep(self, key: str, result: dict, file: str) -> None:
        """Keep a tool's result arrays (its ``file``) and ``info`` under ``key``."""
        self.arrays[key] = P.load_arrays(result["files"][file])
        self.info[key] = dict(result.get("info") or {})


#: A plan of this package: yields requests and returns an :class:`Outcome`.
Plan = Generator[Request, dict, Outcome]


def train_request(src: Source, s: Settings) -> Request:
    """The ``train`` request for ``src`` (a warm start from ``src.init_file`` when asked)."""
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


def remeshed_first(src: Source, s: Settings) -> bool:
    """Can ``src``'s remesh come before its training? A closed mesh (:func:`is_closed`) in
    signed mode with detail, without an up-to-date field: every vertex of its remesh comes
    from the input's exact distance and winding number, the network decides nothing there
    (:func:`~...core.fields.detail.exact_field`), so the remesh is the same before and after
    training. Holes, soups, clouds and curves need the field first."""
    if src.field_file is not None or src.kind != "mesh" or not s.detail:
        return False
    if s.mode_for(src.kind) != "signed":
        return False
    return is_closed(src.arrays["vertices"], src.arrays["faces"])


def exact_request(src: Source, s: Settings) -> Request:
    """The ``exact_remesh`` request of a closed mesh (:func:`remeshed_first`): the remesh its
    field would give, at the resolution that field would be remeshed at."""
    return _exact_remesh(src, s, dict(faces=int(s.faces), **remesh_params(s)), "remeshing")


def _exact_remesh(src: Source, s: Settings, params: dict, what: str) -> Request:
    """An ``exact_remesh`` request of ``src``'s triangles with the settings' preset, overrides
    and device, and ``params`` (detail, sharp, faces, resolution); labelled ``what``."""
    params = {"preset": s.preset, "overrides": dict(s.overrides), "device": s.device, **params}
    return Request(P.EXACT_REMESH, params, _triangles(src), f"{src.name}: {what}")


def _triangles(src: Source) -> dict:
    """The arrays a job on ``src``'s triangles sends: its vertices and faces."""
    return {"vertices": src.arrays["vertices"], "faces": src.arrays["faces"]}


def remesh_resolution(s: Settings) -> int:
    """The resolution a remesh with these settings is extracted at: the user's, else the
    preset's (or its override), as the worker decides it
    (:func:`~...core.training.presets.resolution_for`)."""
    res = s.overrides.get("resolution") if isinstance(s.overrides, dict) else None
    record = {"preset": s.preset, "settings": {"resolution": res}}
    return resolution_for(s.resolution or None, [record])


def preview_request(src: Source, s: Settings) -> Request | None:
    """The coarse preview of a mesh without an up-to-date field in signed mode, shown until
    its remesh replaces it; ``None`` for clouds, curves, unsigned mode, a source with a field,
    or ``s.preview`` 0.

    A closed mesh (:func:`remeshed_first`) gets an ``exact_remesh`` at ``s.preview`` cells,
    marching cubes only (no dual contouring, no decimation), a fraction of a second; none
    when its remesh is no finer (that is then as quick as its preview). Any other mesh or
    soup, whose remesh waits for training, gets a ``winding_preview``: its exact distance
    signed by its winding number, contoured on a dense grid of at most ``s.preview`` cells
    (holes closed as the training's labels close them)."""
    if s.preview <= 0 or src.field_file is not None or src.kind != "mesh":
        return None
    if s.mode_for(src.kind) != "signed":
        return None
    if remeshed_first(src, s):
        if remesh_resolution(s) <= s.preview:
            return None
        params = dict(detail=True, sharp=False, faces=0, resolution=int(s.preview))
        return _exact_remesh(src, s, params, "preview")
    res = min(int(s.preview), remesh_resolution(s))
    return Request(P.WINDING_PREVIEW, {"resolution": res}, _triangles(src), f"{src.name}: preview")


def train_missing(sources: list[Source], s: Settings, outcome: Outcome):
    """Sub-plan: train every source without an up-to-date field, keeping each in
    ``outcome.trained``; returns name -> field file (``yield from`` it)."""
    files = {}
    for src in sources:
        if src.field_file is not None:
            files[src.name] = src.field_file
            continue
        result = yield train_request(src, s)
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


def remesh_params(s: Settings) -> dict:
    """What every job that remeshes a field takes from the settings: ``detail``, ``sharp``
    and ``resolution`` (when not the preset's)."""
    params = {"detail": bool(s.detail), "sharp": bool(s.sharp)}
    if s.resolution:
        params["resolution"] = int(s.resolution)
    return params


def check_op(op: str) -> None:
    """Refuse an unknown CSG operation (:class:`BadInputError`)."""
    if op not in CSG_OPS:
        raise BadInputError(f"unknown CSG operation {op!r}; use one of {', '.join(CSG_OPS)}")


def count_requests(sources: list[Source], per_source: int = 1, shared: int = 0) -> int:
    """How many worker jobs a plan will run: for the progress bar's overall fraction."""
    return sum(x.field_file is None for x in sources) + per_source * len(sources) + shared
