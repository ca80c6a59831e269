"""The add-on inside real Blender (the ``bpy`` module), installed from the built extension zip.

Each scenario runs in its own Python process (``bpy`` can be imported once per process and
must not share one with torch): it installs the zip into a temporary user folder with
``bpy.ops.extensions.package_install_files``, builds a scene, runs the operators through the
worker on the CPU with a tiny preset, and saves the resulting geometry as ``.npz`` files and
facts as JSON. The tests here check that geometry with numpy and the core library.

Which Blender: the scenarios run in ``LIPSDF_BLENDER_PYTHON`` (default: this Python), a Python
with one ``bpy`` module (``make test-blender-4.2`` points it at ``.venv-blender-4.2``); the
worker and these tests stay in this Python. Every scenario records ``bpy.app.version_string``
and must match ``LIPSDF_BLENDER_VERSION`` (default, with this Python: the pin in
``requirements-blender.txt``), so a wrong interpreter fails instead of passing. The zip is
always built with this Python's ``bpy`` (5.0) and the same zip is installed into each version.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from conftest import TINY

from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.formats.files import load_geometry
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.surfaces import metrics, topology
from lipsdf_blender.core.surfaces.remesh import remesh
from lipsdf_blender.core.training.presets import SampleConfig
from lipsdf_blender.core.training.train import train_field

ROOT = Path(__file__).resolve().parents[1]
#: The Python that runs the bpy scenarios (a venv with only that Blender's bpy and numpy).
BLENDER_PYTHON = os.environ.get("LIPSDF_BLENDER_PYTHON") or sys.executable


def _asked_version() -> str | None:
    """The Blender version the run must use: ``LIPSDF_BLENDER_VERSION``, else, when the
    scenarios run in this Python, the ``bpy`` pin of requirements-blender.txt."""
    if os.environ.get("LIPSDF_BLENDER_VERSION"):
        return os.environ["LIPSDF_BLENDER_VERSION"]
    if BLENDER_PYTHON != sys.executable:
        return None
    pins = (ROOT / "requirements-blender.txt").read_text().split()
    return next((p.split("==")[1] for p in pins if p.startswith("bpy==")), None)


def _has_bpy(python: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec("bpy") is not None
    # find_spec, not import: an installed but broken bpy must fail the tests, not skip them.
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('bpy') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0
    except OSError:
        return False


ASKED_VERSION = _asked_version()
# Skipped without bpy, unless a version was asked for by name: then a missing bpy fails.
pytestmark = pytest.mark.skipif(
    not _has_bpy(BLENDER_PYTHON) and not os.environ.get("LIPSDF_BLENDER_VERSION"),
    reason=f"needs the bpy module in {BLENDER_PYTHON} (requirements-blender*.txt)",
)

#: TINY as the operators' ``overrides`` JSON.
TINY_JSON = {k: v for k, v in TINY.items() if k != "samples"}
TINY_JSON["samples"] = {
    "n_uniform": TINY["samples"].n_uniform,
    "n_surface": TINY["samples"].n_surface,
}
RES = 96
#: Worker threads; the training-equality test uses as many in this process. Override on a
#: machine that something else keeps busy (torch's threads then wait for each other).
THREADS = int(os.environ.get("LIPSDF_TEST_THREADS", torch.get_num_threads()))

PRELUDE = """
import json, os, sys
import numpy as np
import bpy

OUT = os.environ["LIPSDF_TEST_OUT"]
TINY = json.loads(os.environ["LIPSDF_TEST_TINY"])
RES = int(os.environ["LIPSDF_TEST_RES"])
assert bpy.ops.extensions.package_install_files(
    filepath=os.environ["LIPSDF_TEST_ZIP"], repo="user_default", enable_on_install=True
) == {"FINISHED"}
from lipsdf_blender import api
from lipsdf_blender.blender import convert, fields, operators, prefs
from lipsdf_blender.blender.plans.build import plan_remesh
from lipsdf_blender.blender.plans.common import Settings
from lipsdf_blender.jobrunner import Job
FACTS = {"blender": bpy.app.version_string}


def clear_scene():
    for o in list(bpy.data.objects):
        bpy.data.objects.remove(o)
    bpy.context.view_layer.update()  # 4.2 lists removed objects (None) in the view layer until then


def world(obj):
    me = obj.data
    V = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", V)
    F = np.empty(len(me.polygons) * 3, np.int32)
    me.polygons.foreach_get("vertices", F)
    M = np.array(obj.matrix_world)
    V = V.reshape(-1, 3).astype(np.float64) @ M[:3, :3].T + M[:3, 3]
    return V, F.reshape(-1, 3)


def save_world(key, obj):
    V, F = world(obj)
    np.savez(os.path.join(OUT, key + ".npz"), V=V, F=F)
    FACTS[key] = {"name": obj.name, "collections": [c.name for c in obj.users_collection]}


def refused(fn, *args, **kw):
    before = set(bpy.data.objects.keys()), len(bpy.data.meshes)
    try:
        fn(*args, **kw)
    except Exception as exc:
        after = set(bpy.data.objects.keys()), len(bpy.data.meshes)
        return {"message": str(exc), "unchanged": before == after}
    return {"message": None, "unchanged": False}


def select(*objs):
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    for o in objs:
        o.select_set(True)
    bpy.context.view_layer.objects.active = objs[0] if objs else None


def to_pointcloud(ob):
    # The mesh of points ob as a Point Cloud object in its place, as this Blender makes one:
    # Object > Convert > Point Cloud, or where Convert has no such target (4.2) a Mesh to Points
    # node applied (4.2 has Point Cloud objects but no other way to fill one from Python).
    select(ob)
    targets = bpy.ops.object.convert.get_rna_type().properties["target"].enum_items
    if "POINTCLOUD" in targets.keys():
        bpy.ops.object.convert(target="POINTCLOUD")
        return bpy.context.active_object
    tree = bpy.data.node_groups.new("ToPoints", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    info = tree.nodes.new("GeometryNodeObjectInfo")
    info.inputs["Object"].default_value = ob
    points = tree.nodes.new("GeometryNodeMeshToPoints")
    tree.links.new(info.outputs["Geometry"], points.inputs["Mesh"])
    tree.links.new(points.outputs["Points"], tree.nodes.new("NodeGroupOutput").inputs[0])
    pc = bpy.data.objects.new(ob.name, bpy.data.pointclouds.new(ob.name))
    ob.users_collection[0].objects.link(pc)
    bpy.context.view_layer.update()  # ob.matrix_world after a change of ob.location
    pc.matrix_world = ob.matrix_world
    pc.modifiers.new("ToPoints", "NODES").node_group = tree
    select(pc)
    assert bpy.ops.object.modifier_apply(modifier="ToPoints") == {"FINISHED"}
    name = ob.name
    bpy.data.objects.remove(ob)
    bpy.data.node_groups.remove(tree)
    pc.name = name
    return pc


class Layout:
    # Stands in for the UILayout of a draw() call (background Blender has no window to draw
    # in): every call, keyword, enum value (icons) and attribute is checked against this
    # Blender's UILayout; what it lacks goes to PROBLEMS.
    RNA = bpy.types.UILayout.bl_rna

    def __setattr__(self, name, value):
        if name not in self.RNA.properties:
            PROBLEMS.append(f"UILayout has no attribute {name}")

    def __getattr__(self, name):
        fn = self.RNA.functions.get(name)
        if fn is None:
            PROBLEMS.append(f"UILayout has no {name}()")

        def call(*args, **kw):
            CALLS.append(f"{name}:{args[1]}" if name == "prop" else name)
            for key, value in kw.items() if fn is not None else ():
                p = fn.parameters.get(key)
                if p is None:
                    PROBLEMS.append(f"UILayout.{name}() has no argument {key}")
                elif p.type == "ENUM" and value not in p.enum_items.keys():
                    PROBLEMS.append(f"UILayout.{name}({key}={value!r}): no such value")
            if name in ("prop", "operator_menu_enum"):
                data, prop = args[:2] if name == "prop" else (operator_rna(args[0]), args[1])
                if prop not in data.bl_rna.properties:
                    PROBLEMS.append(f"UILayout.{name}(): {data!r} has no property {prop}")
            if name == "operator":
                CALLS.append(f"operator:{args[0]}")
                return OperatorProperties(args[0])
            return Layout()

        return call


def operator_rna(idname):
    module, name = idname.split(".")
    try:
        return getattr(getattr(bpy.ops, module), name).get_rna_type()
    except KeyError:
        PROBLEMS.append(f"no operator {idname}")
        return bpy.types.Operator.bl_rna


class OperatorProperties:
    def __init__(self, idname):
        object.__setattr__(self, "rna", operator_rna(idname))

    def __setattr__(self, name, value):
        if name not in self.rna.properties:
            PROBLEMS.append(f"{self.rna.identifier} has no property {name}")


class Drawer:
    # The ``self`` of a draw(): its layout is a Layout, the rest is the real object's.
    def __init__(self, real):
        object.__setattr__(self, "real", real)
        object.__setattr__(self, "layout", Layout())

    def __getattr__(self, name):
        return getattr(self.real, name)


PROBLEMS, CALLS = [], []


def draw(cls, real=None):
    # Run cls.draw with a checking layout; (problems, calls made).
    PROBLEMS.clear()
    CALLS.clear()
    cls.draw(Drawer(real), bpy.context)
    return [list(PROBLEMS), sorted(set(CALLS))]


def finish():
    with open(os.path.join(OUT, "facts.json"), "w") as fh:
        json.dump(FACTS, fh)
    prefs.shutdown_worker()

clear_scene()
"""


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_extension.py"),
            "--out",
            str(out),
            "--stage",
            str(out / "stage"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _env(out: Path) -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the add-on must come from the installed zip
    env.update(
        BLENDER_USER_RESOURCES=str(out / "user"),
        LIPSDF_WORKER_PYTHON=sys.executable,
        LIPSDF_WORKER_THREADS=str(THREADS),
        # Python hides deprecation warnings by default; the console must show none. (Not
        # ResourceWarning: the scenarios' own quick writes would raise it, and Blender's
        # console never shows it.)
        PYTHONWARNINGS="default::DeprecationWarning,default::PendingDeprecationWarning,"
        "default::FutureWarning",
    )
    return env


#: Console lines that are not the add-on's: Blender's Workbench render on a machine without
#: a GPU tries Vulkan first.
NOT_OURS = ("gpu.vulkan",)


def console_warnings(log: str) -> list[str]:
    """The lines of a scenario's console that warn (Python warnings, Blender's own WARNINGs,
    deprecations), but for :data:`NOT_OURS`."""
    pattern = re.compile(r"Warning\b|WARNING|[Dd]eprecat")
    return [
        line
        for line in log.splitlines()
        if pattern.search(line) and not any(s in line for s in NOT_OURS)
    ]


def run_blender(script: str, out: Path, zip_path: Path, timeout: float = 600, env=None):
    """Run ``PRELUDE + script`` in a fresh Python with bpy; return (facts, stdout)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scenario.py"
    path.write_text(PRELUDE + textwrap.dedent(script) + "\nfinish()\n")
    full_env = _env(out)
    full_env.update(
        LIPSDF_TEST_OUT=str(out),
        LIPSDF_TEST_ZIP=str(zip_path),
        LIPSDF_TEST_TINY=json.dumps(TINY_JSON),
        LIPSDF_TEST_RES=str(RES),
    )
    full_env.update(env or {})
    log_path = out / "log.txt"
    with open(log_path, "w") as log_file:
        proc = subprocess.run(
            [BLENDER_PYTHON, str(path)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            env=full_env,
            cwd=str(out),
        )
    log = log_path.read_text(errors="replace")
    assert proc.returncode == 0, log[-6000:]
    facts = json.loads((out / "facts.json").read_text())
    _check_version(facts["blender"])
    assert console_warnings(log) == [], f"Blender {facts['blender']} warned"
    return facts, log


def _check_version(version_string: str) -> None:
    """The scenario ran in the Blender asked for (``version_string`` may end in " LTS")."""
    if ASKED_VERSION is not None:
        assert version_string.split()[0] == ASKED_VERSION, (
            f"asked for Blender {ASKED_VERSION}, {BLENDER_PYTHON} runs {version_string}"
        )


def test_console_warnings_are_found_and_only_blenders_gpu_probe_is_let_through():
    log = "\n".join(
        [
            "LipSDF Remesh: Suzanne: training",
            "/x/ui.py:12: DeprecationWarning: 'UILayout.prop' argument 'emboss' is deprecated",
            "WARNING (bpy.rna): source/blender/python/intern/bpy_rna.cc:1364 unknown",
            "00:49.063  gpu.vulkan       | WARNING Unable to initialize a Vulkan 1.1 instance.",
            "Info: LipSDF: done",
        ]
    )
    found = console_warnings(log)
    assert len(found) == 2 and "DeprecationWarning" in found[0] and "bpy.rna" in found[1]


SCENE = """
# -- Suzanne: remesh keeps the transform and material, never touches the source -------------
bpy.ops.mesh.primitive_monkey_add(location=(1, 2, 3), rotation=(0.3, 0.2, 0.1))
monkey = bpy.context.active_object
monkey.scale = (1.5, 1.5, 1.5)
mat = bpy.data.materials.new("Skin")
monkey.data.materials.append(mat)
dg = bpy.context.evaluated_depsgraph_get()
kind, arrays = convert.object_arrays(monkey, dg)
np.savez(os.path.join(OUT, "monkey_source.npz"), **arrays)
before = (np.array(monkey.matrix_world), arrays["vertices"].copy(), len(monkey.data.polygons))
FACTS["state_untrained"] = fields.field_state(monkey, dg)
remesh = api.remesh(monkey, resolution=RES, **TINY)
V = np.empty(len(remesh.data.vertices) * 3, np.float32)
remesh.data.vertices.foreach_get("co", V)
F = np.empty(len(remesh.data.polygons) * 3, np.int32)
remesh.data.polygons.foreach_get("vertices", F)
np.savez(os.path.join(OUT, "monkey_remesh_local.npz"), V=V.reshape(-1, 3), F=F.reshape(-1, 3))
open(os.path.join(OUT, "monkey.lipsdf"), "wb").write(api.field_of(monkey))
kind2, arrays2 = convert.object_arrays(monkey, bpy.context.evaluated_depsgraph_get())
FACTS["monkey"] = {
    "kind": kind,
    "name": remesh.name,
    "collections": [c.name for c in remesh.users_collection],
    "materials": [m.name for m in remesh.data.materials],
    "same_matrix": bool(np.allclose(np.array(remesh.matrix_world), before[0])),
    "source_matrix_unchanged": bool(np.array_equal(np.array(monkey.matrix_world), before[0])),
    "source_vertices_unchanged": bool(np.array_equal(arrays2["vertices"], before[1])),
    "source_faces": [before[2], len(monkey.data.polygons)],
    "field": {k: getattr(monkey.lipsdf, k) for k in ("kind", "mode", "preset", "samples")},
    "state_trained": fields.field_state(monkey, bpy.context.evaluated_depsgraph_get()),
    "selected": [o.name for o in bpy.context.selected_objects],
}

# -- a cube offset outwards and inwards, in object units ----------------------------------------
bpy.ops.mesh.primitive_cube_add(size=2.0, location=(4, 0, 0))
cube = bpy.context.active_object
cube.name = "Box"
outer, inner = api.offset(cube, [0.2, -0.2], resolution=RES, **TINY)
save_world("box_outer", outer)
save_world("box_inner", inner)

# -- two spheres in world space, one placed by its object scale ---------------------------------
bpy.ops.mesh.primitive_uv_sphere_add(radius=1.0, segments=64, ring_count=32, location=(-0.6, 0, -4))
a = bpy.context.active_object
a.name = "A"
bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, segments=64, ring_count=32, location=(0.6, 0, -4))
b = bpy.context.active_object
b.name = "B"
b.scale = (2.0, 2.0, 2.0)
save_world("union", api.csg([a, b], "union", resolution=RES, **TINY))
save_world("difference", api.csg([a, b], "difference", resolution=RES, **TINY))
save_world("smooth", api.csg([a, b], "union", blend=0.3, resolution=RES, **TINY))

# -- a point cloud with normals, and a mesh of loose vertices without ---------------------------
n = 3000
i = np.arange(n) + 0.5
phi, theta = np.arccos(1 - 2 * i / n), np.pi * (1 + 5 ** 0.5) * i
P = 0.7 * np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
for name, with_normals in (("Cloud", True), ("Loose", False)):
    me = bpy.data.meshes.new(name)
    me.vertices.add(n)
    me.vertices.foreach_set("co", P.astype(np.float32).ravel())
    if with_normals:
        att = me.attributes.new("normal", "FLOAT_VECTOR", "POINT")
        att.data.foreach_set("vector", (P / 0.7).astype(np.float32).ravel())
    ob = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(ob)
    ob.location = (0, -4, 0) if with_normals else (0, -6, 0)
    if with_normals:
        ob = to_pointcloud(ob)
    kind, arrays = convert.object_arrays(ob, bpy.context.evaluated_depsgraph_get())
    FACTS[name + "_type"] = [ob.type, kind]
    FACTS[name + "_has_normals"] = "normals" in arrays
    save_world(name.lower(), api.remesh(ob, resolution=RES, **TINY))

# -- a curve: unsigned by default, a tube of the given thickness ---------------------------------
bpy.ops.curve.primitive_bezier_circle_add(radius=1.0, location=(0, 4, 0))
circle = bpy.context.active_object
save_world("tube", api.remesh(circle, thickness=0.05, resolution=RES, **TINY))
FACTS["tube_field"] = [circle.lipsdf.kind, circle.lipsdf.mode]

# -- bad input is refused with a message and nothing is made ------------------------------------
empty = bpy.data.objects.new("Hollow", bpy.data.meshes.new("Hollow"))
bpy.context.scene.collection.objects.link(empty)
FACTS["empty"] = refused(api.remesh, empty, **TINY)
bad = bpy.data.meshes.new("Broken")
bad.from_pydata([(0, 0, 0), (1, 0, 0), (0, float("nan"), 0)], [], [(0, 1, 2)])
bad_ob = bpy.data.objects.new("Broken", bad)
bpy.context.scene.collection.objects.link(bad_ob)
FACTS["nan"] = refused(api.remesh, bad_ob, **TINY)
bpy.ops.mesh.primitive_cube_add(location=(8, 0, 0))
squashed = bpy.context.active_object
squashed.scale = (1.0, 2.0, 1.0)
FACTS["nonuniform"] = refused(api.offset, squashed, [0.1], **TINY)
select(cube)
FACTS["bad_distances"] = refused(bpy.ops.lipsdf.offset, distances="near, far")
FACTS["csg_poll_one"] = bpy.ops.lipsdf.csg.poll()
FACTS["remesh_poll_one"] = bpy.ops.lipsdf.remesh.poll()
select()
FACTS["remesh_poll_none"] = bpy.ops.lipsdf.remesh.poll()
FACTS["cancel_poll_idle"] = bpy.ops.lipsdf.cancel.poll()

# -- the interface: menu, panel, operator flags ------------------------------------------------
FACTS["menu_entries"] = [f.__name__ for f in bpy.types.VIEW3D_MT_object._dyn_ui_initialize()]
FACTS["menu"] = hasattr(bpy.types, "LIPSDF_MT_object")
FACTS["panel"] = [bpy.types.LIPSDF_PT_main.bl_space_type, bpy.types.LIPSDF_PT_main.bl_category]
FACTS["ops"] = {
    op: {
        "options": sorted(getattr(bpy.types, "LIPSDF_OT_" + op).bl_options),
        "description": getattr(bpy.types, "LIPSDF_OT_" + op).__doc__ or "",
    }
    for op in ("train", "remesh", "offset", "csg", "cancel")
}

# -- a stale field, and a file that keeps its fields ------------------------------------------
dg = bpy.context.evaluated_depsgraph_get()
FACTS["box_state"] = fields.field_state(cube, dg)
bpy.ops.wm.save_as_mainfile(filepath=os.path.join(OUT, "scene.blend"))
monkey.data.vertices[0].co.x += 0.05
monkey.data.update()
FACTS["panel_state_trained"] = fields.cached_state(monkey)
dg = bpy.context.evaluated_depsgraph_get()  # the depsgraph handler sees the edit
FACTS["panel_state_edited"] = fields.cached_state(monkey)
FACTS["state_edited"] = fields.field_state(monkey, dg, refresh=True)
FACTS["panel_state_checked"] = fields.cached_state(monkey)

# -- the panel, menu and preferences draw with what this Blender's UILayout has -----------------
select(monkey)
FACTS["draw_stale"] = draw(bpy.types.LIPSDF_PT_main)
select(bpy.data.objects["Cloud"])
FACTS["draw_cloud"] = draw(bpy.types.LIPSDF_PT_main)
select(circle)
FACTS["draw_curve"] = draw(bpy.types.LIPSDF_PT_main)
FACTS["draw_menu"] = draw(bpy.types.LIPSDF_MT_object)
addon = bpy.context.preferences.addons[prefs.ADDON].preferences
FACTS["draw_prefs"] = draw(type(addon), addon)
"""


@pytest.fixture(scope="module")
def scene(extension_zip, tmp_path_factory):
    out = tmp_path_factory.mktemp("scene")
    # A fixed thread count: the remesh must equal the core's run here bit for bit, and the
    # order of a parallel sum (so the last bits of training) depends on the thread count.
    facts, log = run_blender(SCENE, out, extension_zip, env={"LIPSDF_FAIR_SHARE": "0"})
    return facts, out, log


def _load(out: Path, key: str):
    z = np.load(out / f"{key}.npz")
    return z["V"], z["F"]


def _box_sdf(p, center, half):
    q = np.abs(p - center) - half
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
    return outside + np.minimum(q.max(axis=1), 0.0)


def test_the_blender_that_ran_is_the_one_asked_for_and_the_manifest_allows(scene, record_property):
    facts, _, _ = scene
    record_property("blender", facts["blender"])
    _check_version(facts["blender"])
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    lo, hi = (
        tuple(int(x) for x in manifest[k].split("."))
        for k in ("blender_version_min", "blender_version_max")
    )
    ran = tuple(int(x) for x in facts["blender"].split()[0].split("."))
    assert lo <= ran < hi, (facts["blender"], lo, hi)  # the maximum is exclusive


def test_remesh_is_a_new_closed_object_near_the_source_which_is_left_alone(scene):
    facts, out, _ = scene
    m = facts["monkey"]
    assert m["kind"] == "mesh" and m["name"] == "Suzanne.remesh"
    assert m["collections"] == ["LipSDF"] and m["materials"] == ["Skin"]
    assert m["same_matrix"] and m["source_matrix_unchanged"] and m["source_vertices_unchanged"]
    assert m["source_faces"][0] == m["source_faces"][1] == 500
    assert m["selected"] == ["Suzanne.remesh"]
    assert m["field"]["kind"] == "mesh" and m["field"]["mode"] == "signed"
    assert facts["state_untrained"] == "none" and m["state_trained"] == "fresh"
    src = np.load(out / "monkey_source.npz")
    r = np.load(out / "monkey_remesh_local.npz")
    assert topology.is_watertight(r["F"])
    # Suzanne is open (eyes, neck): the remesh closes it, so measure source -> remesh only.
    d = metrics.chamfer_hausdorff(src["vertices"], src["faces"], r["V"], r["F"], n=20_000)
    diag = np.linalg.norm(src["vertices"].max(0) - src["vertices"].min(0))
    assert d["a_to_b_mean"] < 0.01 * diag, d


def test_remesh_equals_the_core_functions_on_the_same_input(scene):
    facts, out, _ = scene
    src = np.load(out / "monkey_source.npz")
    r = np.load(out / "monkey_remesh_local.npz")
    stored = Field.load(out / "monkey.lipsdf")
    # Extraction: the object's mesh is exactly what core.surfaces.remesh.remesh gives for the stored
    # field (which carries the object's mesh as its input surface).
    mine = remesh(stored, resolution=RES)
    np.testing.assert_allclose(r["V"], mine.vertices, atol=1e-6)
    np.testing.assert_array_equal(r["F"], mine.faces)
    # Training: the worker's field equals core.train_field on the arrays Blender sent.
    kw = dict(TINY, samples=SampleConfig(**TINY_JSON["samples"]))
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        geom = Geometry.mesh(src["vertices"], src["faces"])
        core = train_field(geom, "fast", device="cpu", seed=0, **kw)
    finally:
        torch.set_num_threads(threads)
    x = np.random.default_rng(0).uniform(-2, 2, (4096, 3))
    np.testing.assert_allclose(stored.evaluate(x), core.evaluate(x), atol=1e-5)


def test_offsets_of_a_cube_lie_at_the_asked_distance(scene):
    facts, out, _ = scene
    assert facts["box_outer"]["name"] == "Box.offset+0.2"
    assert facts["box_inner"]["name"] == "Box.offset-0.2"
    for key, want in (("box_outer", 0.2), ("box_inner", -0.2)):
        V, F = _load(out, key)
        assert topology.is_watertight(F)
        d = _box_sdf(V, np.array([4.0, 0, 0]), 1.0)
        # The tiny test network rounds the cube's edges a little: the median is tight, the
        # tail (near edges and corners) is measured at 2 % of the cube's size.
        assert abs(np.median(d) - want) < 0.01, (key, np.median(d))
        assert np.quantile(np.abs(d - want), 0.95) < 0.045, key


def _spheres(V):
    return (
        np.linalg.norm(V - [-0.6, 0, -4], axis=1) - 1.0,
        np.linalg.norm(V - [0.6, 0, -4], axis=1) - 1.0,
    )


def test_csg_of_two_spheres_matches_the_analytic_answer_in_world_space(scene):
    facts, out, _ = scene
    assert facts["union"]["name"] == "A∪B" and facts["difference"]["name"] == "A∖B"
    assert facts["smooth"]["name"] == "A∪B.smooth0.3"
    for key, sdf in (
        ("union", lambda a, b: np.minimum(a, b)),
        ("difference", lambda a, b: np.maximum(a, -b)),
    ):
        V, F = _load(out, key)
        assert topology.is_watertight(F) and topology.connected_components(F) == 1
        err = np.abs(sdf(*_spheres(V)))
        assert np.median(err) < 0.01 and np.quantile(err, 0.99) < 0.04, (key, err.max())
    # The smooth union fills the crease: a point of it lies outside both spheres.
    V, _ = _load(out, "smooth")
    assert np.minimum(*_spheres(V)).max() > 0.03


def test_point_clouds_and_loose_vertices_become_closed_spheres(scene):
    facts, out, _ = scene
    assert facts["Cloud_type"] == ["POINTCLOUD", "points"] and facts["Cloud_has_normals"]
    assert facts["Loose_type"] == ["MESH", "points"] and not facts["Loose_has_normals"]
    for key, centre in (("cloud", [0, -4, 0]), ("loose", [0, -6, 0])):
        V, F = _load(out, key)
        assert topology.is_watertight(F) and topology.connected_components(F) == 1
        r = np.linalg.norm(V - centre, axis=1)
        assert abs(np.median(r) - 0.7) < 0.015 and np.abs(r - 0.7).max() < 0.06, key


def test_a_curve_becomes_a_tube_of_the_given_thickness(scene):
    facts, out, _ = scene
    assert facts["tube_field"] == ["curve", "unsigned"]
    V, F = _load(out, "tube")
    assert topology.is_watertight(F) and topology.genus(V, F) == 1
    p = V - [0, 4, 0]
    d = np.hypot(np.hypot(p[:, 0], p[:, 1]) - 1.0, p[:, 2])
    # Within 5 % of the asked thickness at the median (the tube follows Blender's evaluated
    # polyline, whose chords sit up to 2 % of the radius inside the true circle).
    assert abs(np.median(d) - 0.05) < 0.0025 and np.quantile(np.abs(d - 0.05), 0.95) < 0.01
    assert d.min() > 0.0  # the curve itself is inside the tube everywhere


def test_bad_input_is_refused_with_a_message_and_nothing_is_made(scene):
    facts, _, _ = scene
    assert "empty" in facts["empty"]["message"] and facts["empty"]["unchanged"]
    assert "NaN" in facts["nan"]["message"] and facts["nan"]["unchanged"]
    assert "non-uniform scale" in facts["nonuniform"]["message"]
    assert "Apply" in facts["nonuniform"]["message"] and facts["nonuniform"]["unchanged"]
    assert "cannot read the distances" in facts["bad_distances"]["message"]
    assert facts["bad_distances"]["unchanged"]
    assert facts["remesh_poll_one"] and not facts["csg_poll_one"]
    assert not facts["remesh_poll_none"] and not facts["cancel_poll_idle"]


def test_operators_are_in_the_object_menu_with_undo_and_a_description(scene):
    facts, _, _ = scene
    assert facts["menu"] and "_menu_entry" in facts["menu_entries"]
    assert facts["panel"] == ["VIEW_3D", "LipSDF"]
    for op, info in facts["ops"].items():
        assert info["options"] == ["REGISTER", "UNDO"], op
        assert len(info["description"]) > 20, op


def test_the_panel_menu_and_preferences_draw_with_this_blenders_layout(scene):
    facts, _, _ = scene
    for key in ("draw_stale", "draw_cloud", "draw_curve", "draw_menu", "draw_prefs"):
        assert facts[key][0] == [], key
    # What was drawn: the settings for a mesh, the cloud box for a cloud, the thickness for a
    # curve, the operators in the menu, the worker settings in the preferences.
    stale, cloud, curve = (set(facts[k][1]) for k in ("draw_stale", "draw_cloud", "draw_curve"))
    assert {"box", "label", "row", "operator", "prop:resolution", "prop:distances"} <= stale
    assert "prop:normals" in cloud and "prop:noise_mode" in cloud
    assert "prop:normals" not in stale and "prop:thickness" not in stale
    assert "prop:thickness" in curve
    assert {"operator", "operator_menu_enum", "separator"} <= set(facts["draw_menu"][1])
    assert {"prop:python", "prop:device", "operator"} <= set(facts["draw_prefs"][1])


def test_a_mesh_edited_after_training_has_a_stale_field(scene):
    facts, _, _ = scene
    assert facts["box_state"] == "fresh" and facts["state_edited"] == "stale"
    # The panel never evaluates in draw(): an edit makes its state "checking" until a timer
    # (here: the direct call above) has looked again.
    assert facts["panel_state_trained"] == "fresh"
    assert facts["panel_state_edited"] == "checking"
    assert facts["panel_state_checked"] == "stale"


REOPEN = """
bpy.ops.wm.open_mainfile(filepath=os.environ["LIPSDF_TEST_BLEND"])
box = bpy.data.objects["Box"]
FACTS["had_field"] = fields.has_field(box)
FACTS["sha"] = box.lipsdf.sha256
(shell,) = api.offset(box, [0.1], resolution=RES, **TINY)
save_world("reopened", shell)
FACTS["sha_after"] = box.lipsdf.sha256
FACTS["cache"] = sorted(os.listdir(prefs.cache_dir()))
"""


def test_a_saved_and_reopened_file_offsets_without_training(scene, extension_zip, tmp_path):
    _, out, _ = scene
    facts, log = run_blender(
        REOPEN, tmp_path, extension_zip, env={"LIPSDF_TEST_BLEND": str(out / "scene.blend")}
    )
    assert facts["had_field"] and facts["sha"] == facts["sha_after"]
    assert "training" not in log and "offsetting" in log
    # A fresh user folder: the field came out of the .blend into the new cache.
    assert facts["cache"] == [facts["sha"] + ".lipsdf"]
    V, F = _load(tmp_path, "reopened")
    d = _box_sdf(V, np.array([4.0, 0, 0]), 1.0)
    assert abs(np.median(d) - 0.1) < 0.01


CANCEL = """
import time
bpy.ops.mesh.primitive_ico_sphere_add()
ball = bpy.context.active_object
select(ball)
before = sorted(bpy.data.objects.keys())
settings = Settings(overrides=dict(TINY, steps=200000))
source = convert.object_source(ball, bpy.context.evaluated_depsgraph_get())
job = Job(prefs.client(), plan_remesh([source], settings), stages=2)
operators.set_job(job)
job.start()
FACTS["poll_busy"] = [bpy.ops.lipsdf.remesh.poll(), bpy.ops.lipsdf.cancel.poll()]
deadline = time.monotonic() + 120
while job.status.step < 20 and time.monotonic() < deadline and not job.done:
    job.poll()
    time.sleep(0.05)
FACTS["step_seen"] = job.status.step
FACTS["draw_busy"] = draw(bpy.types.LIPSDF_PT_main)
t = time.monotonic()
bpy.ops.lipsdf.cancel()
while not job.poll():
    time.sleep(0.05)
FACTS["cancel_seconds"] = time.monotonic() - t
FACTS["state"] = job.state
FACTS["after"] = sorted(bpy.data.objects.keys()) == before
FACTS["field"] = fields.has_field(ball)
FACTS["collection"] = "LipSDF" in bpy.data.collections
operators.set_job(None)
# the worker is still usable afterwards
(shell,) = api.offset(ball, [0.1], resolution=48, **dict(TINY, steps=100))
FACTS["after_cancel"] = shell.name
"""


def test_cancel_stops_the_job_and_leaves_nothing_behind(extension_zip, tmp_path):
    facts, _ = run_blender(CANCEL, tmp_path, extension_zip)
    assert facts["poll_busy"] == [False, True]
    assert facts["step_seen"] >= 20 and facts["state"] == "cancelled"
    assert facts["draw_busy"][0] == [] and "progress" in facts["draw_busy"][1]
    assert facts["cancel_seconds"] < 3.0
    assert facts["after"] and not facts["field"] and not facts["collection"]
    assert facts["after_cancel"] == "Icosphere.offset+0.1"


CLUSTER_PREFS = """
import sys
addon = bpy.context.preferences.addons[prefs.ADDON].preferences
FACTS["default_env"] = prefs.client().env
addon.run_on = "ray"
FACTS["no_address"] = refused(prefs.client)["message"]
addon.cluster_address = " ray://gpu-server:10001 "
before = prefs.client()
FACTS["env"] = before.env
FACTS["draw"] = draw(type(addon), addon)
addon.cluster_fallback = False
FACTS["env_no_fallback"] = prefs.client().env
FACTS["restarted"] = prefs.client() is not before
FACTS["ray_imported"] = "ray" in sys.modules
"""


def test_run_jobs_on_a_cluster_sets_the_workers_environment(extension_zip, tmp_path):
    facts, _ = run_blender(CLUSTER_PREFS, tmp_path, extension_zip)
    assert facts["default_env"] == {}  # This Computer: no cluster variables
    assert "Cluster Address" in facts["no_address"]
    env = facts["env"]
    assert env["LIPSDF_WORKER_RAY"] == "ray://gpu-server:10001"
    assert env["LIPSDF_WORKER_RAY_FALLBACK"] == "1"
    assert facts["env_no_fallback"]["LIPSDF_WORKER_RAY_FALLBACK"] == "0"
    assert facts["restarted"]  # a changed setting gives a new worker
    problems, calls = facts["draw"]
    assert problems == []
    assert {"prop:run_on", "prop:cluster_address", "prop:cluster_fallback"} <= set(calls)
    assert not facts["ray_imported"]  # Blender's process never imports Ray


CLUSTER_JOBS = """
import time
addon = bpy.context.preferences.addons[prefs.ADDON].preferences
addon.run_on = "ray"
addon.cluster_address = os.environ["LIPSDF_TEST_RAY"]
addon.cluster_fallback = False  # a job that succeeds ran on the cluster
bpy.ops.mesh.primitive_ico_sphere_add(radius=1.0, location=(3.0, 0.0, 0.0), subdivisions=4)
ball = bpy.context.active_object
select(ball)
FACTS["handshake"] = prefs.client().start()
# the operator, unchanged: train + extract forwarded, the scene built here
assert bpy.ops.lipsdf.remesh(preset="fast", resolution=RES, overrides=json.dumps(TINY)) == {
    "FINISHED"
}
save_world("cluster_remesh", bpy.data.objects["Icosphere.remesh"])
# the same worker's answer says where it ran
field = fields.field_file(ball, prefs.cache_dir())
r = prefs.client().run("sample", {"field": field, "n": 200})
FACTS["ran_on"] = r["info"].get("ran_on")
FACTS["sample_files"] = sorted(r["files"])
# cancel reaches the cluster's job
settings = Settings(overrides=dict(TINY, steps=200000))
source = convert.object_source(ball, bpy.context.evaluated_depsgraph_get())
job = Job(prefs.client(), plan_remesh([source], settings), stages=2)
job.start()
deadline = time.monotonic() + 120
while job.status.step < 20 and time.monotonic() < deadline and not job.done:
    job.poll()
    time.sleep(0.05)
FACTS["step_seen"] = job.status.step
t = time.monotonic()
job.cancel()
while not job.poll():
    time.sleep(0.05)
FACTS["cancel_seconds"] = time.monotonic() - t
FACTS["state"] = job.state
FACTS["ray_imported"] = "ray" in sys.modules
"""


def test_operators_run_unchanged_on_a_ray_cluster(ray_head, extension_zip, tmp_path):
    try:
        facts, log = run_blender(
            CLUSTER_JOBS,
            tmp_path,
            extension_zip,
            env={"LIPSDF_TEST_RAY": ray_head["client"], **ray_head["env"]},
        )
    except AssertionError as exc:  # with what the cluster's Ray Client servers said
        tails = [f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                 for p in sorted(ray_head["logs"].glob("ray_client_server*.err"))]  # fmt: skip
        raise AssertionError("\n".join([str(exc), *tails])) from None
    assert facts["handshake"]["remote"]["address"] == ray_head["client"]
    V, F = _load(tmp_path, "cluster_remesh")
    r = np.linalg.norm(V - np.array([3.0, 0.0, 0.0]), axis=1)
    assert np.abs(r - 1.0).max() < 0.03 and topology.is_watertight(F)
    assert facts["ran_on"] and facts["ran_on"]["cluster"]
    assert facts["sample_files"] == ["points"]
    assert facts["step_seen"] >= 20 and facts["state"] == "cancelled"
    assert facts["cancel_seconds"] < 5.0
    assert not facts["ray_imported"]


def test_the_batch_example_script_runs(extension_zip, tmp_path):
    obj = tmp_path / "suzanne.obj"
    cmd = [
        BLENDER_PYTHON,
        str(ROOT / "scripts" / "example_batch.py"),
        "--zip",
        str(extension_zip),
        "--out",
        str(obj),
        "--steps",
        "300",
        "--resolution",
        "64",
        "--offset",
        "0.05",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(tmp_path), timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "Suzanne.remesh" in proc.stdout and "Suzanne.offset+0.05" in proc.stdout
    assert "train " in proc.stdout  # progress lines while it blocks
    assert console_warnings(proc.stdout + proc.stderr) == []
    geom = load_geometry(obj)
    assert topology.is_watertight(geom.faces) and topology.connected_components(geom.faces) == 2
    assert obj.with_suffix(".blend").exists()


CLOUD = """
S = dict(TINY, steps=300)
# -- a scanner's PLY (normals, colours): what File › Import › Stanford PLY makes of it ----------
assert bpy.ops.wm.ply_import(filepath=os.environ["LIPSDF_TEST_PLY"]) == {"FINISHED"}
scan = bpy.context.active_object
scan.location = (2, 0, 0)
me = scan.data
FACTS["import"] = {
    "type": scan.type,
    "counts": [len(me.vertices), len(me.edges), len(me.polygons)],
    "attributes": {a.name: [a.domain, a.data_type] for a in me.attributes
                   if not a.name.startswith(".")},
    "is_cloud": convert.is_cloud(scan),
}
def colours(obj):
    att = obj.data.attributes["Col"]
    C = np.empty(len(att.data) * 4, np.float32)
    att.data.foreach_get("color", C)
    return C
before = colours(scan)
kind, arrays = convert.object_arrays(scan, bpy.context.evaluated_depsgraph_get())
np.savez(os.path.join(OUT, "scan_arrays.npz"), **arrays)
FACTS["scan_kind"] = kind
FACTS["defaults"] = [bpy.context.scene.lipsdf.normals, bpy.context.scene.lipsdf.noise_mode]

select(scan)
api.train(scan, **S)  # the panel's defaults: the cloud's own normals, noise auto
open(os.path.join(OUT, "auto.lipsdf"), "wb").write(api.field_of(scan))
FACTS["auto"] = [scan.lipsdf.cloud, scan.lipsdf.normals, scan.lipsdf.noise, scan.lipsdf.sha256]
shell = api.remesh(scan, normals="estimate", noise=0.002, resolution=48, **S)
save_world("scan_remesh", shell)
open(os.path.join(OUT, "estimate.lipsdf"), "wb").write(api.field_of(scan))
FACTS["estimate"] = [scan.lipsdf.cloud, scan.lipsdf.normals, scan.lipsdf.noise,
                     scan.lipsdf.sha256]
api.remesh(scan, normals="estimate", noise=0.002, resolution=48, **S)  # reuses that field
FACTS["reused_sha"] = scan.lipsdf.sha256
FACTS["colours_unchanged"] = bool(np.array_equal(before, colours(scan)))
FACTS["bad_normals"] = refused(api.train, scan, normals="flip")
FACTS["bad_noise"] = refused(api.train, scan, noise=-1.0)

# -- the other ways a cloud carries normals ----------------------------------------------------
select(scan)
bpy.ops.object.duplicate()
pc = to_pointcloud(bpy.context.active_object)
kind, arrays = convert.object_arrays(pc, bpy.context.evaluated_depsgraph_get())
FACTS["pointcloud"] = [pc.type, kind, bool(np.allclose(arrays.get("normals"), np.load(
    os.path.join(OUT, "scan_arrays.npz"))["normals"]))]
free = bpy.data.meshes.new("Free")
free.vertices.add(4)
free.vertices.foreach_set("co", np.eye(4, 3, dtype=np.float32).ravel())
att = free.attributes.new("custom_normal", "FLOAT_VECTOR", "POINT")
att.data.foreach_set("vector", np.tile([0.0, 0.0, 1.0], 4).astype(np.float32))
ob = bpy.data.objects.new("Free", free)
bpy.context.scene.collection.objects.link(ob)
kind, arrays = convert.object_arrays(ob, bpy.context.evaluated_depsgraph_get())
FACTS["custom_normal"] = [kind, np.asarray(arrays.get("normals")).tolist()]
zero = bpy.data.meshes.new("Zero")
zero.vertices.add(4)
zero.vertices.foreach_set("co", np.eye(4, 3, dtype=np.float32).ravel())
zero.attributes.new("normal", "FLOAT_VECTOR", "POINT")  # all zero: no direction to use
ob = bpy.data.objects.new("Zero", zero)
bpy.context.scene.collection.objects.link(ob)
kind, arrays = convert.object_arrays(ob, bpy.context.evaluated_depsgraph_get())
FACTS["zero_normals"] = [kind, "normals" in arrays]
bpy.ops.mesh.primitive_cube_add()
FACTS["cube_is_cloud"] = convert.is_cloud(bpy.context.active_object)
"""


def test_a_scanned_ply_cloud_keeps_its_normals_and_says_what_was_done(extension_zip, tmp_path):
    from conftest import sphere_cloud, write_scan_ply

    P, N = sphere_cloud(3000)
    write_scan_ply(tmp_path / "scan.ply", P, N)
    facts, log = run_blender(
        CLOUD, tmp_path / "run", extension_zip, env={"LIPSDF_TEST_PLY": str(tmp_path / "scan.ply")}
    )
    out = tmp_path / "run"
    imp = facts["import"]
    # Blender's importer: a mesh of loose vertices, normals in "normal", colours in "Col".
    assert imp["type"] == "MESH" and imp["counts"] == [3000, 0, 0] and imp["is_cloud"]
    assert imp["attributes"]["normal"] == ["POINT", "FLOAT_VECTOR"]
    assert imp["attributes"]["Col"][0] == "POINT"
    arrays = np.load(out / "scan_arrays.npz")
    assert facts["scan_kind"] == "points" and set(arrays.files) == {"vertices", "normals"}
    np.testing.assert_allclose(arrays["vertices"], P, atol=1e-6)
    np.testing.assert_allclose(arrays["normals"], N, atol=1e-6)
    assert facts["defaults"] == ["auto", "auto"]

    auto = Field.load(out / "auto.lipsdf").record["cloud"]
    assert auto["normals"] == "input" and auto["points"] == 3000
    line, normals, noise, sha = facts["auto"]
    assert line.startswith("normals: the input's for 3,000 points, ") and "(auto)" in line
    assert normals == "auto" and noise == -1.0
    assert "Info: LipSDF: scan: normals: the input's for 3,000 points" in log

    est = Field.load(out / "estimate.lipsdf").record["cloud"]
    assert est["normals"] == "estimated"
    line2, normals2, noise2, sha2 = facts["estimate"]
    assert line2.startswith("normals: estimated for 3,000 points, ") and "(given)" in line2
    assert normals2 == "estimate" and abs(noise2 - 0.002) < 1e-8
    assert sha2 != sha and facts["reused_sha"] == sha2  # changed choices train again, once
    assert facts["colours_unchanged"]
    assert "normals must be 'auto'" in facts["bad_normals"]["message"]
    assert "noise must be a distance" in facts["bad_noise"]["message"]
    assert facts["bad_normals"]["unchanged"] and facts["bad_noise"]["unchanged"]

    V, F = _load(out, "scan_remesh")
    assert topology.is_watertight(F) and topology.connected_components(F) == 1
    r = np.linalg.norm(V - [2, 0, 0], axis=1)
    assert abs(np.median(r) - 0.7) < 0.02

    assert facts["pointcloud"] == ["POINTCLOUD", "points", True]
    assert facts["custom_normal"] == ["points", [[0.0, 0.0, 1.0]] * 4]
    assert facts["zero_normals"] == ["points", False]
    assert not facts["cube_is_cloud"]
