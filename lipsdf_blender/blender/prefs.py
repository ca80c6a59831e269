"""Add-on preferences (worker interpreter, device, cache, where jobs run) and the worker's
process.

The worker's Python is, in order: the one set in the preferences, the ``LIPSDF_WORKER_PYTHON``
environment variable (handy for render farms and tests), or the private environment that the
*Set Up Worker* button makes in the extension's user folder. Blender's own Python is never
used: torch inside Blender's process breaks on some platforms and would freeze the interface.

*Run jobs on* › *A Ray Cluster* starts the same local worker with ``LIPSDF_WORKER_RAY`` (the
cluster address) and ``LIPSDF_WORKER_RAY_FALLBACK`` in its environment; the worker forwards
the jobs (``worker/remote.py``). Ray is imported by that worker only, never here.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ..core.errors import LipSDFError
from ..worker import environment
from ..worker.client import WorkerClient

ADDON = __package__.rpartition(".")[0]
ENV_PYTHON = "LIPSDF_WORKER_PYTHON"
DEVICE_ITEMS = (
    ("auto", "Automatic", "CUDA, then Apple MPS, then the CPU"),
    ("cuda", "CUDA", "An NVIDIA GPU"),
    ("mps", "Apple MPS", "The GPU of an Apple silicon Mac"),
    ("cpu", "CPU", "The processor, always available"),
)
RUN_ON_ITEMS = (
    ("local", "This Computer", "The worker runs every job here"),
    ("ray", "A Ray Cluster", "The worker sends every job to a Ray cluster, e.g. a GPU server"),
)

# Module state of the Blender session: the worker process and the last check's verdict.
_client: WorkerClient | None = None
_check: dict = {}
_setup: dict = {"lines": [], "running": False, "error": None, "verdict": None}


def preferences():
    addon = bpy.context.preferences.addons.get(ADDON)
    return addon.preferences if addon is not None else None


def user_folder() -> Path:
    """The add-on's writable folder (the extension's user directory)."""
    try:
        return Path(bpy.utils.extension_path_user(ADDON, create=True))
    except (ValueError, RuntimeError, TypeError):  # installed as a legacy add-on
        return Path(bpy.utils.user_resource("DATAFILES", path="lipsdf", create=True))


def private_env() -> Path:
    return user_folder() / "worker-env"


def cache_dir() -> Path:
    prefs = preferences()
    if prefs is not None and prefs.cache_dir:
        return Path(bpy.path.abspath(prefs.cache_dir))
    return user_folder() / "cache"


def worker_python() -> str:
    """The interpreter the worker runs with.

    Raises
    ------
    LipSDFError
        None is set and there is no private environment, with what to do.
    """
    prefs = preferences()
    if prefs is not None and prefs.python:
        return bpy.path.abspath(prefs.python)
    if os.environ.get(ENV_PYTHON):
        return os.environ[ENV_PYTHON]
    private = environment.venv_python(private_env())
    if private.exists():
        return str(private)
    raise LipSDFError(
        "LipSDF has no worker Python yet: in Edit › Preferences › Add-ons › LipSDF, choose a "
        "Python with torch, numpy and libigl, or press Set Up Worker to make one"
    )


def device() -> str:
    prefs = preferences()
    return prefs.device if prefs is not None else "auto"


def client() -> WorkerClient:
    """The session's worker client; a new one when the interpreter, threads or cluster
    settings (*Run jobs on*) changed."""
    global _client
    python = worker_python()
    prefs = preferences()
    env = {}
    if prefs is not None and prefs.threads:
        env["LIPSDF_WORKER_THREADS"] = str(prefs.threads)
    env.update(cluster_env(prefs))
    if _client is not None and (_client.python != python or _client.env != env):
        _client.shutdown()
        _client = None
    if _client is None:
        _client = WorkerClient(python, env=env)
    return _client


def cluster_env(prefs) -> dict:
    """The worker's environment variables for *Run jobs on* (see worker/remote.py): Blender
    never imports Ray; the worker does, when an address is set.

    Raises
    ------
    LipSDFError
        A Ray cluster is chosen but no address is given.
    """
    if prefs is None or prefs.run_on != "ray":
        return {}
    address = prefs.cluster_address.strip()
    if not address:
        raise LipSDFError(
            "LipSDF is set to run jobs on a Ray cluster but has no Cluster Address: in "
            "Edit › Preferences › Add-ons › LipSDF, enter one (ray://host:10001) or choose "
            "This Computer"
        )
    return {
        "LIPSDF_WORKER_RAY": address,
        "LIPSDF_WORKER_RAY_FALLBACK": "1" if prefs.cluster_fallback else "0",
    }


def shutdown_worker() -> None:
    global _client
    if _client is not None:
        _client.shutdown()
        _client = None


class LIPSDF_OT_check_worker(bpy.types.Operator):
    """Run the worker's Python once and show what it finds (torch, libigl, GPU)"""

    bl_idname = "lipsdf.check_worker"
    bl_label = "Check Worker"

    def execute(self, context):
        try:
            python = worker_python()
        except LipSDFError as exc:
            _check.clear()
            _check.update(ok=False, message=str(exc))
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        verdict = environment.check_interpreter(python)  # a few seconds: it imports torch
        _check.clear()
        _check.update(verdict)
        self.report({"INFO"} if verdict["ok"] else {"ERROR"}, verdict["message"])
        return {"FINISHED"} if verdict["ok"] else {"CANCELLED"}


class LIPSDF_OT_setup_worker(bpy.types.Operator):
    """Make a private Python environment for the worker and install torch, numpy and libigl
    into it (downloads 1-5 GB: PyPI's torch for Linux is the CUDA build)"""

    bl_idname = "lipsdf.setup_worker"
    bl_label = "Set Up Worker"

    @classmethod
    def poll(cls, context):
        if _setup["running"]:
            cls.poll_message_set("The worker environment is being set up")
            return False
        return True

    def _work(self, folder: Path, packages) -> None:
        try:
            _setup["verdict"] = environment.setup_environment(
                folder, progress=lambda line: _setup["lines"].append(line), packages=packages
            )
        except LipSDFError as exc:
            _setup["error"] = str(exc)
        finally:
            _setup["running"] = False

    def execute(self, context):
        _setup.update(lines=[], running=True, error=None, verdict=None)
        folder = private_env()
        prefs = preferences()
        # The pins for this Python, which makes the venv (3.13 from Blender 5.1 on).
        packages = environment.pinned(ray=prefs is not None and prefs.run_on == "ray")
        if bpy.app.background:
            self._work(folder, packages)
            return self._done(context)
        self._thread = threading.Thread(target=self._work, args=(folder, packages), daemon=True)
        self._thread.start()
        self._timer = context.window_manager.event_timer_add(0.5, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for area in context.screen.areas if context.screen else ():
            area.tag_redraw()
        if _setup["running"]:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self._done(context)

    def _done(self, context):
        if _setup["error"]:
            self.report({"ERROR"}, _setup["error"])
            return {"CANCELLED"}
        verdict = _setup["verdict"]
        _check.clear()
        _check.update(verdict)
        prefs = preferences()
        if prefs is not None:
            prefs.python = verdict["executable"]
        self.report({"INFO"}, verdict["message"])
        return {"FINISHED"}


class LIPSDF_AP_preferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    python: StringProperty(
        name="Worker Python",
        description="A Python 3.10+ with torch, numpy and libigl; empty: the private "
        "environment made by Set Up Worker",
        subtype="FILE_PATH",
    )
    device: EnumProperty(name="Device", items=DEVICE_ITEMS, default="auto")
    cache_dir: StringProperty(
        name="Cache Folder",
        description="Where trained fields are kept as .lipsdf files; empty: the add-on's "
        "user folder",
        subtype="DIR_PATH",
    )
    threads: IntProperty(
        name="CPU Threads",
        description="Threads the worker may use on the CPU; 0 lets torch choose",
        min=0,
        max=512,
    )
    run_on: EnumProperty(
        name="Run jobs on",
        items=RUN_ON_ITEMS,
        default="local",
        description="Where the worker runs the jobs: here, or on a Ray cluster (the worker "
        "then needs Ray: Set Up Worker installs it)",
    )
    cluster_address: StringProperty(
        name="Cluster Address",
        description="The Ray cluster's client address, e.g. ray://gpu-server:10001 (on the "
        "server: ray start --head --ray-client-server-port 10001)",
    )
    cluster_fallback: BoolProperty(
        name="Fall Back to This Computer",
        description="When the cluster cannot be reached or is lost, run the jobs here "
        "instead of failing them",
        default=True,
    )

    def draw(self, context):
        layout = self.layout
        col = layout.column()
        row = col.row(align=True)
        row.prop(self, "python")
        row.operator(LIPSDF_OT_check_worker.bl_idname, text="Check", icon="CHECKMARK")
        if _check:
            box = col.box()
            box.alert = not _check.get("ok")
            for line in _wrap(_check.get("message", ""), 90):
                box.label(text=line)
        col.prop(self, "device")
        col.prop(self, "threads")
        col.prop(self, "cache_dir")
        col.prop(self, "run_on")
        if self.run_on == "ray":
            box = col.box()
            box.prop(self, "cluster_address")
            box.prop(self, "cluster_fallback")
            box.label(text="The server needs the same Python minor version and Ray 2.60.0")
        row = col.row()
        row.operator(LIPSDF_OT_setup_worker.bl_idname, icon="IMPORT")
        row.label(text=f"into {private_env()}")
        if _setup["running"] or _setup["lines"]:
            box = col.box()
            for line in _setup["lines"][-6:]:
                box.label(text=line[:120])
            if _setup["error"]:
                box.alert = True
                for line in _wrap(_setup["error"], 90):
                    box.label(text=line)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width) or [""]


classes = (LIPSDF_OT_check_worker, LIPSDF_OT_setup_worker, LIPSDF_AP_preferences)
