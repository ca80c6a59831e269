"""Warm start: retraining an edited input from its old field (core/training/warm.py, the worker's
``init``, the add-on's plans).

A bumped sphere must get its bump in fewer steps; labels kept from the old training must be
exactly the labels of the new mesh; an old field that does not fit gives a cold start that
says why; a bad ``init`` is the caller's mistake.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from conftest import SPHERE_RADIUS, TINY, run_bpy_scenario

from lipsdf_blender.blender.plans.build import plan_offset, plan_remesh, plan_train
from lipsdf_blender.blender.plans.common import Settings, Source, warm_summary
from lipsdf_blender.core.fields.detail import InputSurface
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.training import warm
from lipsdf_blender.core.training.presets import SampleConfig, get_preset
from lipsdf_blender.core.training.sampling import (
    WindingNumber,
    make_samples,
    normalization,
    sample_on_geometry,
)
from lipsdf_blender.core.training.train import train_field
from lipsdf_blender.worker import protocol as P
from lipsdf_blender.worker.client import WorkerClient, WorkerError

APEX = np.ones(3) / np.sqrt(3.0)  # the bump's direction: away from the box's faces
HEIGHT = 0.1
FRACTION = get_preset("fast").warm_fraction


def bumped(V: np.ndarray, height: float = HEIGHT, radius: float = 0.35) -> np.ndarray:
    """The sphere's vertices within ``radius`` of the apex pushed out by up to ``height``
    (a smooth ``(1 - (d/r)^2)^2`` profile)."""
    d = np.linalg.norm(V - SPHERE_RADIUS * APEX, axis=1)
    w = np.clip(1 - (d / radius) ** 2, 0, None) ** 2
    return V + V / np.linalg.norm(V, axis=1, keepdims=True) * (height * w)[:, None]


@pytest.fixture(scope="module")
def spheres():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        V, F = primitives.icosphere(SPHERE_RADIUS, 4)
        old = train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=0, **TINY)
        new_geom = Geometry.mesh(bumped(V), F)
        new = train_field(new_geom, "fast", device="cpu", seed=0, init=old, **TINY)
    finally:
        torch.set_num_threads(threads)  # the other modules' fields are trained with 2
    return old, new, new_geom


def test_the_warm_started_field_has_the_bump(spheres):
    old, new, geom = spheres
    ws = new.record["warm_start"]
    assert ws["used"] and ws["from"] == old.record["input_hash"]
    assert ws["steps"] == round(FRACTION * TINY["steps"]) < TINY["steps"]
    assert len(new.record["loss_curve"]) and new.record["loss_curve"][-1][0] == ws["steps"] - 1
    # The old frame is kept: the bump fits in the old box.
    assert np.allclose(new.center, old.center) and new.scale == old.scale
    # The new surface is the field's zero set.
    P = sample_on_geometry(geom, 20000, np.random.default_rng(1))
    f_new, f_old = np.abs(new.evaluate(P)), np.abs(old.evaluate(P))
    assert np.quantile(f_new, 0.95) < 0.008 and f_new.max() < 0.04
    on_bump = np.linalg.norm(P, axis=1) > SPHERE_RADIUS + 0.03  # moved by 3 % of the radius+
    assert on_bump.sum() > 100
    assert np.quantile(f_new[on_bump], 0.9) < 0.012 < 0.02 < np.quantile(f_old[on_bump], 0.1)
    # Between the old and the new surface at the apex: outside before, inside now.
    mid = (SPHERE_RADIUS + HEIGHT / 2) * APEX[None]
    assert old.evaluate(mid)[0] > 0.02 and new.evaluate(mid)[0] < -0.02
    # Far from the bump the sphere stays where it was.
    far = -SPHERE_RADIUS * APEX[None] * np.array([[1.0], [1.05], [0.95]])
    assert np.allclose(
        new.evaluate(far), [0.0, 0.05 * SPHERE_RADIUS, -0.05 * SPHERE_RADIUS], atol=0.012
    )


def test_labels_kept_are_the_new_meshes_labels(spheres):
    """Only points where the chain's winding number is not 0 are labelled again, and the
    result equals labelling every point from scratch."""
    _, new, geom = spheres
    ws = new.record["warm_start"]
    assert ws["labels"] == "reused"
    assert 0 < ws["relabelled"] < 0.15 * ws["samples"]
    V, F = primitives.icosphere(SPHERE_RADIUS, 4)
    old_geom = Geometry.mesh(V, F)
    center, scale = normalization(old_geom)
    cfg = SampleConfig(n_uniform=4000, n_surface=8000)
    norm = lambda g: Geometry.mesh((g.vertices - center) * scale, g.faces)  # noqa: E731
    samples = make_samples(norm(old_geom), "signed", cfg, seed=2)
    kept = warm._Kept(samples, warm._config(cfg))
    edit, why = warm.find_edit(InputSurface(V, F), norm(geom), center, scale)
    assert edit is not None, why
    out, stats = warm.relabel(kept, edit, norm(geom), cfg, seed=2)
    assert stats["labels"] == "reused" and stats["flipped"] > 0
    truth = np.where(WindingNumber(norm(geom)).inside(out.points.astype(np.float64)), -1, 1)
    assert np.array_equal(out.labels, truth)
    # Most old points kept their label without a winding number of the new mesh.
    assert stats["checked"] < 0.2 * len(samples.labels)


def test_edits_that_break_the_chain_relabel_everything():
    V, F = primitives.icosphere(1.0, 2)
    center, scale = np.zeros(3), 1.0
    surface = InputSurface(V, F)
    g = Geometry.mesh(V * 1.01, F[::-1])
    assert "faces" in warm.find_edit(surface, g, center, scale)[1]
    # An open mesh whose rim moved: the chain has a boundary, its winding number is no
    # integer and labels far away may change.
    hole = (F == 0).any(axis=1)  # every face around vertex 0: a hole with a rim
    open_F = F[~hole]
    rim = np.setdiff1d(np.unique(F[hole]), [0])
    V2 = V.copy()
    V2[rim] *= 1.05
    edit, why = warm.find_edit(InputSurface(V, open_F), Geometry.mesh(V2, open_F), center, 1.0)
    assert edit is None and "rim" in why
    # The same move on the closed sphere is fine.
    edit, why = warm.find_edit(surface, Geometry.mesh(V2, F), center, 1.0)
    assert edit is not None and edit.moved == len(rim), why


def test_an_old_field_that_does_not_fit_gives_a_cold_start_and_says_why(spheres):
    old, _, geom = spheres
    # Another width: cold, the full steps, the reason recorded.
    f = train_field(geom, "fast", device="cpu", seed=0, init=old, **dict(TINY, width=16, steps=40))
    ws = f.record["warm_start"]
    assert ws["used"] is False and "16" in ws["reason"] and "32" in ws["reason"]
    assert f.record["loss_curve"][-1][0] == 39
    c, s = normalization(geom)
    assert np.allclose(f.center, c) and f.scale == s
    # Other mode, other input kind, an input that outgrew the box: refused by the check.
    W, D = old.net.width, old.net.depth
    assert "unsigned" in warm.check(old, geom, "unsigned", D, W, 0.01)[1]
    pts = Geometry.points(geom.vertices)
    assert "points" in warm.check(old, pts, "signed", D, W, None)[1]
    grown = Geometry.mesh(geom.vertices * 1.5, geom.faces)
    assert "grew" in warm.check(old, grown, "signed", D, W, None)[1]
    shrunk = Geometry.mesh(geom.vertices * 0.4, geom.faces)
    assert "shrank" in warm.check(old, shrunk, "signed", D, W, None)[1]
    assert (
        train_field(geom, "fast", device="cpu", seed=0, **dict(TINY, steps=5)).record["warm_start"]
        is None
    )


def test_the_warm_schedule_ramps_up_then_decays():
    lrs = [warm.schedule(i, 200, 1e-2, 1e-5) for i in range(200)]
    peak = int(np.argmax(lrs))
    assert peak == int(warm.WARM_RAMP * 200) - 1 and lrs[peak] == pytest.approx(1e-2)
    assert lrs[0] < 0.2 * lrs[peak] and lrs[-1] == pytest.approx(1e-5)
    assert np.all(np.diff(lrs[peak:]) <= 0)


def test_worker_warm_starts_from_init_and_refuses_a_bad_one(tmp_path):
    V, F = primitives.icosphere(SPHERE_RADIUS, 3)
    samples = {"n_uniform": 2000, "n_surface": 4000}
    train = {
        "preset": "fast",
        "device": "cpu",
        "seed": 3,
        "overrides": {"depth": 3, "width": 16, "steps": 100, "batch_size": 256, "samples": samples},
    }
    with WorkerClient(env={"LIPSDF_WORKER_THREADS": "1"}) as c:
        first = c.run("train", train, tmp_path / "a", arrays={"vertices": V, "faces": F})
        assert first["info"]["warm_start"] is None
        old = first["files"]["field"]
        arrays = {"vertices": bumped(V), "faces": F}
        again = c.run("train", dict(train, init=old), tmp_path / "b", arrays=arrays)
        ws = again["info"]["warm_start"]
        assert ws["used"] and ws["steps"] == round(FRACTION * 100) and ws["labels"] == "reused"
        assert 0 < ws["relabelled"] < ws["samples"]
        for i, bad in enumerate([str(tmp_path / "missing.lipsdf"), 3, str(tmp_path / "a")]):
            with pytest.raises(WorkerError) as err:
                c.run("train", dict(train, init=bad), tmp_path / f"c{i}", arrays=arrays)
            assert err.value.kind == P.BAD_INPUT and "init" in str(err.value)


# -- the add-on's plans (no bpy) --------------------------------------------------------------
def _run_plan(plan):
    """Drive a plan with a fake worker: every train request answers with a field file."""
    sent = []
    try:
        request = next(plan)
        while True:
            sent.append(request)
            info = {"warm_start": {"used": True, "steps": 1050, "samples": 1000, "relabelled": 30}}
            request = plan.send({"files": {"field": __file__}, "info": info})
    except StopIteration as stop:
        return sent, stop.value


def test_plans_pass_the_stale_field_only_when_warm_start_is_on():
    V, F = primitives.icosphere(1.0, 1)
    src = Source("Ball", "mesh", {"vertices": V, "faces": F}, init_file="/cache/old.lipsdf")
    sent, outcome = _run_plan(plan_train([src], Settings()))
    assert sent[0].type == P.TRAIN and sent[0].params["init"] == "/cache/old.lipsdf"
    assert outcome.trained["Ball"].warm == (
        "warm start from the previous field: 1050 steps, 3 % relabelled"
    )
    assert "init" not in _run_plan(plan_train([src], Settings(warm_start=False)))[0][0].params
    first = next(plan_offset([src], Settings(), [0.1]))
    assert first.type == P.TRAIN and first.params["init"] == "/cache/old.lipsdf"
    # A closed mesh is previewed and remeshed from its exact distance first; the training
    # after carries init.
    plan = plan_remesh([src], Settings())
    empty = {"files": {}, "info": {"empty": True}}
    assert next(plan).type == P.EXACT_REMESH  # its preview
    assert plan.send(empty).type == P.EXACT_REMESH  # its remesh
    second = plan.send(empty)
    assert second.type == P.TRAIN and second.params["init"] == "/cache/old.lipsdf"
    plan.close()
    # An up-to-date field is used as it is: nothing to train, no init.
    fresh = Source("Ball", "mesh", src.arrays, field_file="/cache/new.lipsdf")
    plan = plan_remesh([fresh], Settings())
    assert next(plan).type == P.EXTRACT
    plan.close()
    plain = Source("Ball", "mesh", {"vertices": V, "faces": F})
    assert "init" not in _run_plan(plan_train([plain], Settings()))[0][0].params


def test_warm_summary_lines():
    assert warm_summary(None) == ""
    assert warm_summary({"used": False, "reason": "the old field is unsigned"}) == (
        "trained from scratch: the old field is unsigned"
    )
    line = warm_summary(
        {"used": True, "steps": 280, "samples": 10000, "relabelled": 40, "labels": "reused"}
    )
    assert line == "warm start from the previous field: 280 steps, 0.4 % relabelled"
    assert warm_summary({"used": True, "steps": 9, "labels": "recomputed"}).endswith(
        "all samples labelled"
    )


# -- in Blender (the bpy module, in its own process: bpy and torch do not share one) -----------
BLENDER_SCENARIO = """
import json, os
import numpy as np
import bpy
import lipsdf_blender
lipsdf_blender.register()
from lipsdf_blender import api
from lipsdf_blender.blender import fields

TINY = json.loads(os.environ["LIPSDF_TEST_TINY"])
for o in list(bpy.data.objects):
    bpy.data.objects.remove(o)
bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=4, radius=0.8)
ob = bpy.context.active_object
api.train(ob, **TINY)
facts = {"first": ob.lipsdf.warm}


def edit(fn):
    me = ob.data
    V = np.empty(len(me.vertices) * 3)
    me.vertices.foreach_get("co", V)
    me.vertices.foreach_set("co", fn(V.reshape(-1, 3)).ravel())
    me.update()
    return fields.field_state(ob, bpy.context.evaluated_depsgraph_get(), refresh=True)


def bump(V):
    u = np.ones(3) / 3 ** 0.5
    d = np.linalg.norm(V - 0.8 * u, axis=1)
    w = np.clip(1 - (d / 0.35) ** 2, 0, None) ** 2
    return V + V / np.linalg.norm(V, axis=1, keepdims=True) * (0.1 * w)[:, None]


facts["state"] = edit(bump)
shell = api.remesh(ob, resolution=64, detail=False, **TINY)
facts["second"] = ob.lipsdf.warm
V = np.empty(len(shell.data.vertices) * 3)
shell.data.vertices.foreach_get("co", V)
facts["shell_reach"] = float(np.linalg.norm(V.reshape(-1, 3), axis=1).max())
facts["state_again"] = edit(lambda V: V * 1.01)
api.remesh(ob, resolution=64, warm_start=False, **TINY)
facts["third"] = ob.lipsdf.warm
print("FACTS " + json.dumps(facts))
"""


@pytest.mark.skipif(importlib.util.find_spec("bpy") is None, reason="needs the bpy module")
def test_blender_retrains_a_stale_object_from_its_field(tmp_path):
    tiny = {k: v for k, v in TINY.items() if k != "samples"}
    tiny.update(steps=300, samples={"n_uniform": 20_000, "n_surface": 40_000})
    facts, _ = run_bpy_scenario(BLENDER_SCENARIO, tmp_path, tiny, timeout=300)
    assert facts["first"] == "" and facts["state"] == "stale"
    steps = round(FRACTION * 300)
    assert facts["second"].startswith(f"warm start from the previous field: {steps} steps, ")
    # The network's own surface has the bump (apex at 0.9 of the radius 0.8 sphere's centre).
    assert 0.88 < facts["shell_reach"] < 0.93
    assert facts["state_again"] == "stale" and facts["third"] == ""
