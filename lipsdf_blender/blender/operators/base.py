"""What every LipSDF operator that runs a job shares: the job, its settings, progress, result.

Each operator copies its properties into a :class:`~..plans.common.Settings`, turns the
selected objects into :class:`~..plans.common.Source` arrays and runs its plan (one of
:mod:`..plans`) on the worker as a :class:`~lipsdf_blender.jobrunner.Job`. ``invoke`` (the
sidebar, menus, F3) runs it as a modal operator: a timer polls the worker, the status bar and
the panel show progress, Esc or :class:`LIPSDF_OT_cancel` stops it. ``execute`` (scripts,
``blender -b``, the redo panel) blocks and prints progress lines. In both, the scene is touched
only after the worker's last answer, inside one undo step; a failure removes anything made.

One exception: a plan's :class:`~lipsdf_blender.jobrunner.Delivery` (a closed mesh's remesh,
made before its field is trained) is built as soon as it arrives (:meth:`JobOperator.build_early`),
while the job goes on. It is final: the field trained after it gives the same mesh. A
delivery with ``final`` false (a coarse preview of that remesh) is built the same way, and
a later delivery of the same key, or the job's outcome, replaces its data in place
(:meth:`JobOperator.update_early`: the same object, name, selection and transform; no second
object, no orphan data). The operator still ends in one undo step that holds it. If the rest
of the job is cancelled or fails, the delivered objects stay (they are whole, and the best
that arrived: the remesh, or its preview if nothing finer came), no field is stored, the
report says so, and the operator finishes (so undo removes them); if building anything
fails, everything the run made is removed.
"""

from __future__ import annotations

import json
import re
import sys
import time

import bpy
from bpy.props import StringProperty

from ...core.errors import BadInputError, CancelledError, LipSDFError
from ...jobrunner import Job, Status
from .. import convert, fields, prefs
from ..plans.common import Settings, count_requests
from ..props import settings_properties
from .selection import supported_selected

SETTINGS_KEYS = (
    "preset",
    "mode",
    "thickness",
    "resolution",
    "seed",
    "detail",
    "sharp",
    "faces",
    "normals",
    "noise_mode",
    "noise",
    "warm_start",
)
#: Seconds the Cancel operator waits for the worker to confirm.
CANCEL_WAIT = 3.0

# The one job of this Blender session, and what the last finished run made or said
# (the scripting API reads these).
_job: Job | None = None
last_results: list[str] = []
last_error: str = ""


def busy() -> bool:
    """Is a LipSDF job running in this session?"""
    return _job is not None and not _job.done


def current_job() -> Job | None:
    """The session's job (running or just ended), or ``None``."""
    return _job


def set_job(job: Job | None) -> None:
    """Make ``job`` the session's job (``None``: forget it)."""
    global _job
    _job = job


def parse_distances(text: str) -> list[float]:
    """``"0.05, -0.1 0.2"`` -> ``[0.05, -0.1, 0.2]``; raises :class:`BadInputError`."""
    parts = [p for p in re.split(r"[,;\s]+", text.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise BadInputError(
            f"cannot read the distances {text!r}: write numbers separated by commas, "
            "for example 0.05, -0.05"
        ) from None
    if not values:
        raise BadInputError("give at least one offset distance, for example 0.05")
    if any(v != v or abs(v) == float("inf") for v in values):
        raise BadInputError("offset distances must be finite numbers")
    return values


class _Progress:
    """Prints progress lines (background mode and scripts): each new phase at once, the
    steps within a phase at most once a second."""

    def __init__(self, what: str):
        """``what``: the operator's label, at the start of each line."""
        self.what, self.last, self.text, self.phase = what, 0.0, "", None

    def __call__(self, status: Status) -> None:
        """Print ``status`` when its phase changed, or when it changed and a second has
        passed since the last line."""
        text = status.text()
        now = time.monotonic()
        phase = (status.label, status.phase)
        if phase != self.phase or (text != self.text and now - self.last >= 1.0):
            self.text, self.last, self.phase = text, now, phase
            sys.stdout.write(f"LipSDF {self.what}: {text}\n")
            sys.stdout.flush()


class JobOperator:
    """What every operator that runs worker jobs shares (all but Cancel): its settings,
    sources, job, progress and result. A subclass gives ``plan`` (its plan function called
    with the sources, the settings and its own properties) and ``build`` (the objects it
    makes), and where needed ``objects``, ``gather`` and ``summary``."""

    bl_options = {"REGISTER", "UNDO"}
    #: Does the plan reuse a stored, up-to-date field instead of training again?
    reuse_fields = True
    #: Why a non-uniform scale is refused (``None``: it is fine).
    uniform_scale_for: str | None = None
    #: A tool's own settings, kept in the scene as ``scene_prefix + key``.
    tool_keys: tuple[str, ...] = ()
    scene_prefix: str = ""

    @classmethod
    def poll(cls, context):
        """Runnable only in Object Mode, with no job running and the objects it needs."""
        if busy():
            cls.poll_message_set("A LipSDF job is running: wait for it or cancel it (Esc)")
            return False
        if context.mode != "OBJECT":
            cls.poll_message_set("Switch to Object Mode first")
            return False
        return cls.poll_objects(context)

    @classmethod
    def poll_objects(cls, context) -> bool:
        """Are the objects this operator needs selected? (Says what to select when not.)"""
        if not supported_selected(context):
            cls.poll_message_set("Select a mesh, curve or point cloud object")
            return False
        return True

    # -- what a subclass provides ---------------------------------------------------------
    def objects(self, context) -> list:
        """The objects whose fields the plan uses (default: the supported selected ones)."""
        return supported_selected(context)

    def plan(self, sources, settings):
        """The plan to run: a generator of worker requests (see :mod:`..plans`)."""
        raise NotImplementedError

    def build(self, context, outcome, made: list) -> None:
        """Make the result objects, appending each to ``made`` as soon as it exists."""

    def build_early(self, context, outcome, keys: list, made: list) -> None:
        """Make the result objects of ``keys`` (source names) from a plan's early
        :class:`~lipsdf_blender.jobrunner.Delivery`, appending each to ``made``; only the
        operators whose plans deliver early have it."""
        raise NotImplementedError(f"{type(self).__name__} builds no early results")

    def update_early(self, context, outcome, key: str, objs: list) -> None:
        """Put ``key``'s results from ``outcome`` into ``objs``, the objects built for it from
        a preview (a :class:`~lipsdf_blender.jobrunner.Delivery` with ``final`` false), in
        place; only the operators whose plans deliver previews have it."""
        raise NotImplementedError(f"{type(self).__name__} replaces no previews")

    def early_objects(self, key: str) -> list:
        """The objects built so far from ``key``'s deliveries that still exist."""
        return _alive(self._early_by_key.get(key, []))

    def gather(self, context, objs: list) -> None:
        """Read what the plan needs besides the objects' fields (other objects' vertices,
        the camera, a plane) before the job starts; raise :class:`BadInputError` to refuse."""

    # -- shared machinery -----------------------------------------------------------------
    def settings(self) -> Settings:
        """The run's :class:`Settings`, copied from the operator's properties."""
        try:
            overrides = json.loads(self.overrides) if self.overrides else {}
        except json.JSONDecodeError as exc:
            raise BadInputError(f"the overrides are not valid JSON: {exc}") from None
        if not isinstance(overrides, dict):
            raise BadInputError("the overrides must be a JSON object of preset settings")
        return Settings(
            preset=self.preset,
            mode=self.mode,
            thickness=self.thickness,
            resolution=self.resolution,
            seed=self.seed,
            detail=self.detail,
            sharp=self.sharp,
            faces=self.faces,
            normals=self.normals,
            noise=self.noise if self.noise_mode == "given" else None,
            device=prefs.device(),
            warm_start=self.warm_start,
            overrides=overrides,
        )

    def _start(self, context) -> Job:
        """Read the objects, make the sources and start the plan's job (does not block)."""
        global last_error
        last_error = ""
        last_results.clear()
        objs = self.objects(context)
        if not objs:
            raise BadInputError("select a mesh, curve or point cloud object first")
        settings = self.settings()
        # A worker that is not running yet starts now (without waiting for it): its start
        # (importing torch, seconds) overlaps reading the objects below.
        client = prefs.client()
        if not client.is_alive():
            client.start(wait=False)
        self.gather(context, objs)
        depsgraph = context.evaluated_depsgraph_get()
        cache = prefs.cache_dir()
        sources = []
        for obj in objs:
            if self.uniform_scale_for:
                convert.check_uniform_scale(obj, self.uniform_scale_for)
            src = convert.object_source(obj, depsgraph)
            mode = settings.mode_for(src.kind)
            normals, noise = settings.cloud_for(src.kind)
            if self.reuse_fields and fields.usable_field(
                obj, src.kind, src.arrays, mode, settings.thickness, normals, noise
            ):
                src.field_file = fields.field_file(obj, cache)
            elif settings.warm_start:
                src.init_file = fields.previous_field(obj, src.kind, src.arrays, cache)
            sources.append(src)
        self._names = [o.name for o in objs]
        self._early: list = []  # objects built from deliveries, before the job ended
        self._early_by_key: dict[str, list] = {}  # source name -> the objects built for it
        self._early_keys: set[str] = set()  # the source names whose delivery was final
        self._early_error = ""
        plan = self.plan(sources, settings)
        job = Job(client, plan, stages=self.stages(sources))
        set_job(job)
        job.start()
        return job

    def stages(self, sources) -> int:
        """How many worker requests the plan makes (default: training + one per source)."""
        return count_requests(sources)

    def invoke(self, context, event):
        """Take unset properties from the panel's, then run modal (blocking in background)."""
        scene_settings = getattr(context.scene, "lipsdf", None)
        for key in SETTINGS_KEYS + tuple(getattr(self, "scene_keys", ())):
            if scene_settings is not None and not self.properties.is_property_set(key):
                setattr(self, key, getattr(scene_settings, key))
        for key in self.tool_keys:  # the scene keeps them as <prefix><key>
            if scene_settings is not None and not self.properties.is_property_set(key):
                setattr(self, key, getattr(scene_settings, self.scene_prefix + key))
        if bpy.app.background:
            return self.execute(context)
        try:
            self._job = self._start(context)
        except LipSDFError as exc:
            return self._fail(exc)
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        wm.progress_begin(0, 1000)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        """Poll the job on each timer tick, show its progress; Esc cancels it."""
        job = self._job
        if event.type == "ESC" and event.value == "PRESS":
            job.cancel()
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        job.poll()
        for delivery in job.take_deliveries():
            self._deliver(context, job, delivery)
        wm = context.window_manager
        wm.progress_update(int(job.status.fraction * 1000))
        if context.workspace is not None:
            context.workspace.status_text_set(f"LipSDF: {job.status.text()}  (Esc to cancel)")
        _redraw(context)
        if not job.done:
            return {"PASS_THROUGH"}
        wm.event_timer_remove(self._timer)
        wm.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        _redraw(context)
        return self._conclude(context, job)

    def execute(self, context):
        """Run the job to its end, printing progress lines (scripts, ``blender -b``)."""
        try:
            job = self._start(context)
        except LipSDFError as exc:
            return self._fail(exc)
        try:
            job.run(
                on_progress=_Progress(self.bl_label),
                on_delivery=lambda d: self._deliver(context, job, d),
            )
        except LipSDFError:
            pass  # _conclude reports it
        return self._conclude(context, job)

    def _deliver(self, context, job: Job, delivery) -> None:
        """Build a delivery's objects now and select them, or put it into the objects its
        preview made (selection left as it is); if that fails, remove what it made and
        cancel the job (:meth:`_conclude` reports it)."""
        if self._early_error:
            return
        made: list = []
        try:
            for key in delivery.keys:
                shown = self.early_objects(key)
                if shown:
                    self.update_early(context, delivery.outcome, key, shown)
                    continue
                part: list = []
                try:
                    self.build_early(context, delivery.outcome, [key], part)
                finally:
                    made += part
                self._early_by_key[key] = part
        except Exception as exc:  # nothing half-made
            convert.remove_objects(made)
            msg = str(exc) if isinstance(exc, LipSDFError) else f"{type(exc).__name__}: {exc}"
            self._early_error = msg
            job.cancel()
            return
        self._early += made
        if delivery.final:
            self._early_keys.update(delivery.keys)
        _select(context, made)
        _redraw(context)

    def _conclude(self, context, job: Job):
        """Report the ended job; on success build its objects and store trained fields."""
        if _job is job:
            set_job(None)
        for line in job.logs:
            self.report({"WARNING"}, line)
        early = _alive(getattr(self, "_early", []))
        if getattr(self, "_early_error", ""):
            convert.remove_objects(early)
            return self._fail(LipSDFError(f"making the result failed: {self._early_error}"))
        try:
            outcome = job.result()
        except LipSDFError as exc:
            if early:  # delivered whole before the job stopped: kept, no field stored
                return self._keep_early(context, early, exc)
            return self._fail(exc, "WARNING" if isinstance(exc, CancelledError) else "ERROR")
        made: list = []
        try:
            self.build(context, outcome, made)
            for name, trained in outcome.trained.items():
                obj = bpy.data.objects.get(name)
                if obj is not None:
                    fields.store(obj, trained, prefs.cache_dir())
        except Exception as exc:  # nothing half-made: remove what was built, then say why
            convert.remove_objects(early + made)
            msg = str(exc) if isinstance(exc, LipSDFError) else f"{type(exc).__name__}: {exc}"
            return self._fail(LipSDFError(f"making the result failed: {msg}"))
        made = early + made
        _select(context, made)
        last_results[:] = [o.name for o in made]
        for name, trained in outcome.trained.items():
            if trained.summary:  # point clouds: what was done to their normals and points
                self.report({"INFO"}, f"LipSDF: {name}: {trained.summary}")
            if trained.warm:
                self.report({"INFO"}, f"LipSDF: {name}: {trained.warm}")
        self.report({"INFO"}, self.summary(outcome, made))  # last: the status bar shows it
        return {"FINISHED"}

    def _keep_early(self, context, early: list, exc: LipSDFError):
        """The job stopped after its early results were built: keep them (finished, one undo
        step), store no field, and say so."""
        global last_error
        stopped = "cancelled" if isinstance(exc, CancelledError) else f"failed: {exc}"
        coarse = {id(o) for k, objs in self._early_by_key.items() if k not in self._early_keys
                  for o in objs}  # fmt: skip
        kept = [o.name + (" (a coarse preview)" if id(o) in coarse else "") for o in early]
        last_error = (
            f"LipSDF: kept {', '.join(kept)}; the field was not trained "
            f"(the job was {stopped}): Remesh again or Train Field to get it"
        )
        _select(context, early)
        last_results[:] = [o.name for o in early]
        self.report({"WARNING"}, last_error)
        return {"FINISHED"}

    def summary(self, outcome, made) -> str:
        """The closing report line (the status bar shows it)."""
        if not made:
            return "LipSDF: trained " + ", ".join(
                f"{n} ({t.info.get('seconds') or 0:.1f} s, "
                f"loss {t.info.get('final_loss') or 0:.3g}, {t.info.get('device')})"
                for n, t in outcome.trained.items()
            )
        return "LipSDF: made " + ", ".join(
            f"{o.name} ({len(o.data.polygons):,} faces)" for o in made
        )

    def _fail(self, exc: Exception, level: str = "ERROR"):
        """Report ``exc`` (kept as ``last_error``) and cancel the operator."""
        global last_error
        last_error = str(exc)
        self.report({level}, str(exc))
        return {"CANCELLED"}


def _select(context, objs: list) -> None:
    """Make ``objs`` the selection, the last one active (nothing when empty)."""
    if not objs:
        return
    for obj in context.view_layer.objects:
        obj.select_set(False)
    for obj in objs:
        obj.select_set(True)
    context.view_layer.objects.active = objs[-1]


def _alive(objs: list) -> list:
    """The objects still in the file (a user may delete an early result while the job runs)."""
    out = []
    for obj in objs:
        try:
            _ = obj.name
        except ReferenceError:
            continue
        out.append(obj)
    return out


def _redraw(context) -> None:
    """Redraw the 3D views (the panel's progress) and the status bar."""
    screen = getattr(context, "screen", None)
    for area in screen.areas if screen else ():
        if area.type in ("VIEW_3D", "STATUSBAR"):
            area.tag_redraw()


def with_settings(*groups):
    """Give an operator class the shared settings, ``overrides`` and the given property groups."""

    def decorate(cls):
        """Give ``cls`` the properties as annotations (its own last, so they win)."""
        ann = dict(settings_properties())
        for group in groups:
            ann.update(group())
        ann["overrides"] = StringProperty(
            name="Overrides",
            description='Preset settings as JSON, for scripts (for example {"steps": 500})',
            options={"HIDDEN", "SKIP_SAVE"},
        )
        ann.update(cls.__dict__.get("__annotations__", {}))
        cls.__annotations__ = ann
        return cls

    return decorate


def stop_job(timeout: float = CANCEL_WAIT) -> None:
    """Cancel the running job and wait (briefly) until the worker confirms.

    The job is forgotten even when no operator polls it any more (its modal operator was
    dropped when a file was loaded, say), so the other operators become available again.
    """
    job = _job
    if job is None:
        return
    job.cancel()
    deadline = time.monotonic() + timeout
    while not job.poll() and time.monotonic() < deadline:
        time.sleep(0.05)
    set_job(None)


@bpy.app.handlers.persistent
def _on_load_pre(*_args) -> None:
    """Loading a file drops modal operators: stop their job rather than leave it orphaned."""
    if busy():
        stop_job()


def register() -> None:
    """Stop a running job when another file is loaded."""
    if _on_load_pre not in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.append(_on_load_pre)


def unregister() -> None:
    """Undo :func:`register` and stop the running job."""
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    stop_job()


def field_tool(prefix: str, group):
    """Decorate a field tool: the shared settings plus ``group``'s, kept in the scene as
    ``prefix + key`` (the panel's values; set ones win)."""

    def decorate(cls):
        """Add the properties and say which keys the scene keeps under ``prefix``."""
        cls = with_settings(group)(cls)
        cls.tool_keys = tuple(group())
        cls.scene_prefix = prefix
        return cls

    return decorate
