"""Remesh in Blender: a closed mesh's object is built before its field is trained (issue 22).

One scenario in a fresh ``bpy`` process (bpy and torch never share one), with the add-on from
this checkout (``PYTHONPATH``, ``register()``) and a real worker on one thread, fair share
off. A spy on ``convert.new_mesh_object`` records each result object as it is made: whether
the source had its field then, whether the job was still running, and the arrays it was
made from; a spy on ``convert.replace_mesh`` each time a preview's mesh is replaced. The tests
check geometry: the early object equals the remesh of the field stored after it, that field
equals one trained before any remesh, a cancel after the early object keeps it and stores no
field, and an open mesh shows its winding-number preview (closed, the hole closed) until its
trained remesh replaces it. At a resolution finer than the preview's (``PREVIEW``), the object
is first a coarse preview (closed, within one of its cells of the input) whose mesh the full
remesh replaces in place: one object, its mesh datablock,
name, transform and selection kept, no orphan meshes; a cancel after the preview keeps it, a
cancel during the training after the full remesh keeps that.
"""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
import torch
from conftest import TINY, run_bpy_scenario

from lipsdf_blender.core.fields.detail import exact_field
from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.surfaces import topology
from lipsdf_blender.core.surfaces.extract import cell_size
from lipsdf_blender.core.surfaces.remesh import remesh
from lipsdf_blender.core.training.presets import PREVIEW_RESOLUTION

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs bpy")

RES = 48
#: A resolution finer than the preview's (64 cells): the object shows a preview first.
FINE = 80
PREVIEW = PREVIEW_RESOLUTION

SCENARIO = """
import json, os
import numpy as np
import bpy
import lipsdf_blender
lipsdf_blender.register()
from lipsdf_blender import api
from lipsdf_blender.blender import convert, fields, operators, prefs

OUT = os.environ["LIPSDF_TEST_OUT"]
TINY = json.loads(os.environ["LIPSDF_TEST_TINY"])
RES = int(os.environ["LIPSDF_TEST_RES"])
FINE = int(os.environ["LIPSDF_TEST_FINE"])
for o in list(bpy.data.objects):
    bpy.data.objects.remove(o)
for m in [m for m in bpy.data.meshes if m.users == 0]:  # the startup file's cube
    bpy.data.meshes.remove(m)
facts = {}
made = {}  # result name -> the source's name, whether it had a field when made
cancel_on = set()
cancel_on_replace = set()
events = {}  # result name -> what happened to it, in order
real_new = convert.new_mesh_object
real_replace = convert.replace_mesh


def spy(context, name, V, F, matrix=None, like=None):
    obj = real_new(context, name, V, F, matrix, like)
    # busy: the operator's job still runs (training); else the job has ended
    made[name] = {"source": like.name, "field_then": fields.has_field(like),
                  "busy": operators.busy()}
    events.setdefault(name, []).append({"event": "new", "pointer": obj.as_pointer(),
                                        "data": obj.data.name, "busy": operators.busy(),
                                        "field_then": fields.has_field(like)})
    np.savez(os.path.join(OUT, name + ".npz"), V=np.asarray(V), F=np.asarray(F))
    if like.name in cancel_on:
        operators.current_job().cancel()  # the training that runs after the early object
    return obj


def replace_spy(obj, V, F):
    real_replace(obj, V, F)
    source = bpy.data.objects[obj.name[: -len(".remesh")]]
    events.setdefault(obj.name, []).append({"event": "replace", "pointer": obj.as_pointer(),
                                            "data": obj.data.name, "busy": operators.busy(),
                                            "field_then": fields.has_field(source),
                                            "selected": obj.select_get()})
    np.savez(os.path.join(OUT, obj.name + ".full.npz"), V=np.asarray(V), F=np.asarray(F))
    if source.name in cancel_on_replace:
        operators.current_job().cancel()  # the training after the full remesh


def mesh_of(obj):
    me = obj.data
    V = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", V)
    F = np.empty(len(me.polygons) * 3, np.int32)
    me.polygons.foreach_get("vertices", F)
    return V.reshape(-1, 3), F.reshape(-1, 3)


def orphans():
    return sorted(m.name for m in bpy.data.meshes if m.users == 0)


def same_matrix(a, b):
    return all(abs(x - y) < 1e-6 for ra, rb in zip(a, b) for x, y in zip(ra, rb))


convert.new_mesh_object = spy
convert.replace_mesh = replace_spy


def ball(name, drop_face=False):
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=3, radius=0.8)
    ob = bpy.context.active_object
    ob.name = name
    if drop_face:
        import bmesh
        bm = bmesh.new()
        bm.from_mesh(ob.data)
        bm.faces.ensure_lookup_table()
        bm.faces.remove(bm.faces[0])
        bm.to_mesh(ob.data)
        bm.free()
    return ob


def field_path(ob):
    return fields.field_file(ob, prefs.cache_dir()) if fields.has_field(ob) else None


closed, twin, stop, cup = ball("Closed"), ball("Twin"), ball("Stop"), ball("Cup", True)
api.train(twin, resolution=RES, **TINY)  # a field trained before any remesh
r = api.remesh(closed, resolution=RES, **TINY)
facts["closed"] = {"result": r.name, "field": field_path(closed), "twin": field_path(twin)}
cancel_on.add("Stop")
kept = [api.remesh(stop, resolution=RES, **TINY)]
facts["stop"] = {"results": [o.name for o in kept], "field": fields.has_field(stop),
                 "message": operators.last_error,
                 "collections": [c.name for o in kept for c in o.users_collection]}
cancel_on.clear()
c = api.remesh(cup, resolution=RES, **TINY)
V, F = mesh_of(c)
np.savez(os.path.join(OUT, "Cup.remesh.final.npz"), V=V, F=F)
facts["cup"] = {"result": c.name, "field": field_path(cup), "orphans": orphans()}
# finer than the preview: a preview first, the full remesh in its place
shown, coarse, late = ball("Shown"), ball("Coarse"), ball("Late")
shown.location, shown.rotation_euler, shown.scale = (1.0, 2.0, 3.0), (0.3, 0.2, 0.1), (2, 2, 2)
bpy.context.view_layer.update()
r = api.remesh(shown, resolution=FINE, **TINY)
V, F = mesh_of(r)
np.savez(os.path.join(OUT, "Shown.remesh.final.npz"), V=V, F=F)
facts["shown"] = {"result": r.name, "pointer": r.as_pointer(), "data": r.data.name,
                  "field": field_path(shown), "selected": r.select_get(),
                  "active": bpy.context.view_layer.objects.active.name,
                  "matrix_equal": same_matrix(r.matrix_world, shown.matrix_world),
                  "results": sorted(o.name for o in bpy.data.objects
                                    if o.name.startswith("Shown.")),
                  "orphans": orphans()}
cancel_on.add("Coarse")  # as the preview is made: the full remesh is cancelled
kept = api.remesh(coarse, resolution=FINE, **TINY)
V, F = mesh_of(kept)
np.savez(os.path.join(OUT, "Coarse.remesh.final.npz"), V=V, F=F)
facts["coarse"] = {"result": kept.name, "field": fields.has_field(coarse),
                   "message": operators.last_error, "orphans": orphans()}
cancel_on.clear()
cancel_on_replace.add("Late")  # as the full remesh replaces the preview: the training
kept = api.remesh(late, resolution=FINE, **TINY)
V, F = mesh_of(kept)
np.savez(os.path.join(OUT, "Late.remesh.final.npz"), V=V, F=F)
facts["late"] = {"result": kept.name, "field": fields.has_field(late),
                 "message": operators.last_error, "orphans": orphans()}
facts["made"] = made
facts["events"] = events
prefs.shutdown_worker()
print("FACTS " + json.dumps(facts))
"""


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    out = tmp_path_factory.mktemp("early")
    tiny = {k: v for k, v in TINY.items() if k != "samples"}
    tiny.update(steps=200, samples={"n_uniform": 4000, "n_surface": 8000})
    env = dict(LIPSDF_FAIR_SHARE="0", LIPSDF_TEST_RES=str(RES), LIPSDF_TEST_FINE=str(FINE))
    facts, stdout = run_bpy_scenario(SCENARIO, out, tiny, **env)
    return facts, out, stdout


def _mesh(out, name):
    z = np.load(out / f"{name}.npz")
    return z["V"], z["F"]


def test_a_closed_mesh_is_built_before_its_field_and_equals_the_fields_remesh(scenario):
    facts, out, _ = scenario
    name = facts["closed"]["result"]
    assert name == "Closed.remesh"
    # made while the job still ran, before the field existed
    assert facts["made"][name] == {"source": "Closed", "field_then": False, "busy": True}
    V, F = _mesh(out, name)
    assert topology.is_watertight(F) and topology.connected_components(F) == 1
    r = np.linalg.norm(V, axis=1)
    # on the icosphere: between its faces' nearest points (1.8 % in) and its vertices
    assert r.max() < 0.8 + 1e-4 and r.min() > 0.8 * 0.98
    # The field stored after it gives the very same remesh: the early result is final.
    field = Field.load(facts["closed"]["field"])
    final = remesh(field, RES)
    assert np.array_equal(V, final.vertices) and np.array_equal(F, final.faces)
    # ... and is the field a training before any remesh gives (same seed, fair share off).
    twin = Field.load(facts["closed"]["twin"])
    for a, b in zip(field.net.parameters(), twin.net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_cancel_after_the_early_result_keeps_it_and_stores_no_field(scenario):
    facts, out, _ = scenario
    stop = facts["stop"]
    assert stop["results"] == ["Stop.remesh"] and stop["collections"] == ["LipSDF"]
    assert not stop["field"]
    assert "kept Stop.remesh" in stop["message"] and "not trained" in stop["message"]
    V, F = _mesh(out, "Stop.remesh")
    assert topology.is_watertight(F)
    # the same input (Closed is the same icosphere) gives the same mesh
    Vc, Fc = _mesh(out, "Closed.remesh")
    assert np.array_equal(V, Vc) and np.array_equal(F, Fc)


def test_an_open_mesh_shows_a_winding_preview_then_its_trained_remesh_in_place(scenario):
    facts, out, log = scenario
    name = facts["cup"]["result"]
    # made from the preview while the job ran (before the field), replaced once it had ended
    new, replace = facts["events"][name]
    assert new["event"] == "new" and new["busy"] and not new["field_then"]
    assert replace["event"] == "replace" and not replace["busy"]
    assert new["pointer"] == replace["pointer"] and new["data"] == replace["data"] == name
    assert facts["cup"]["orphans"] == []
    # the preview: closed, one piece, the hole closed, within a cell of the sphere (at the
    # remesh's resolution, coarser than the preview's 64 cells)
    Vp, Fp = _mesh(out, name)
    assert topology.is_watertight(Fp) and topology.connected_components(Fp) == 1
    cell = 1.6 / RES
    r = np.linalg.norm(Vp, axis=1)
    assert r.max() < 0.8 + cell and r.min() > 0.8 * 0.98 - cell
    # the object ends with the stored field's remesh
    assert facts["cup"]["field"] is not None
    final = remesh(Field.load(facts["cup"]["field"]), RES)
    V, F = _final(out, name)
    assert np.array_equal(F, final.faces) and np.array_equal(V, final.vertices.astype(np.float32))
    assert topology.is_watertight(F)  # the field closed the hole
    assert abs(np.median(np.linalg.norm(V, axis=1)) - 0.8) < 0.02
    # the progress lines name the phase
    assert re.search(r"Cup: preview", log), log[-2000:]
    assert re.search(r"Cup: training · (label|train)", log), log[-2000:]


def test_a_finer_remesh_shows_a_coarse_preview_then_replaces_its_mesh_in_place(scenario):
    facts, out, log = scenario
    shown = facts["shown"]
    name = shown["result"]
    new, replace = facts["events"][name]  # made once, replaced once: one object
    assert new["event"] == "new" and replace["event"] == "replace"
    assert new["busy"] and not new["field_then"] and replace["busy"] and not replace["field_then"]
    assert new["pointer"] == replace["pointer"] == shown["pointer"]  # the same object
    assert new["data"] == replace["data"] == shown["data"] == name  # ... and mesh datablock
    assert replace["selected"] and shown["selected"] and shown["active"] == name
    assert shown["matrix_equal"] and shown["results"] == [name] and shown["orphans"] == []
    # the preview: closed, and within one of its cells of the input (the icosphere)
    Vp, Fp = _mesh(out, name)
    assert topology.is_watertight(Fp) and topology.connected_components(Fp) == 1
    cell = cell_size(exact_field(Geometry.mesh(*primitives.icosphere(0.8, 3))), PREVIEW)
    r = np.linalg.norm(Vp, axis=1)
    assert r.max() < 0.8 + cell and r.min() > 0.8 * 0.98 - cell
    # the object ends with exactly the stored field's remesh (float32 in Blender)
    field = Field.load(shown["field"])
    final = remesh(field, FINE)
    V, F = _final(out, name)
    assert np.array_equal(F, final.faces) and np.array_equal(V, final.vertices.astype(np.float32))
    assert len(Fp) < len(F) / 1.3  # the preview was coarser
    assert np.array_equal(_mesh(out, name + ".full")[1], F)
    assert re.search(r"Shown: preview", log) and re.search(r"Shown: training · ", log)


def test_a_cancel_after_the_preview_keeps_it_and_after_the_full_remesh_keeps_that(scenario):
    facts, out, _ = scenario
    coarse, late = facts["coarse"], facts["late"]
    assert coarse["result"] == "Coarse.remesh" and not coarse["field"]
    assert "kept Coarse.remesh (a coarse preview)" in coarse["message"], coarse["message"]
    assert [e["event"] for e in facts["events"]["Coarse.remesh"]] == ["new"]
    V, F = _final(out, "Coarse.remesh")
    Vp, Fp = _mesh(out, "Coarse.remesh")
    assert topology.is_watertight(F) and np.array_equal(F, Fp)
    assert np.array_equal(V, Vp.astype(np.float32))
    assert late["result"] == "Late.remesh" and not late["field"]
    assert "kept Late.remesh;" in late["message"] and "preview" not in late["message"]
    assert [e["event"] for e in facts["events"]["Late.remesh"]] == ["new", "replace"]
    # the same input and resolution as Shown: the same full remesh
    V, F = _final(out, "Late.remesh")
    Vs, Fs = _final(out, "Shown.remesh")
    assert np.array_equal(V, Vs) and np.array_equal(F, Fs)
    assert coarse["orphans"] == [] and late["orphans"] == []


def _final(out, name):
    z = np.load(out / f"{name}.final.npz")
    return z["V"], z["F"]
