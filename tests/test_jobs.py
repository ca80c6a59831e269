"""The add-on's job driver (``lipsdf_blender.jobrunner``) and plans without Blender.

A scripted fake client stands in for the worker, so every path of the state machine is
reached: a chain of requests, a failing request in the middle, a cancel, a result that races a
cancel, and a worker that never answers a cancel. One test runs a real worker end to end.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import TINY

from lipsdf_blender import jobrunner  # these modules must import without bpy
from lipsdf_blender.blender.plans.build import (
    plan_csg,
    plan_offset,
    plan_remesh,
    plan_train,
    remesh_requests,
)
from lipsdf_blender.blender.plans.common import (
    Settings,
    Source,
    count_requests,
    geometry_hash,
    preview_request,
    train_request,
)
from lipsdf_blender.core.errors import BadInputError, CancelledError
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.surfaces import topology
from lipsdf_blender.jobrunner import CANCELLED, DONE, FAILED, Job, Status
from lipsdf_blender.worker import protocol as P
from lipsdf_blender.worker.client import WorkerClient, WorkerError


class FakeClient:
    """Answers each submitted request with the next scripted reply."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.submitted, self.cancelled, self.killed = [], [], False
        self.queue = []

    def submit(self, job_type, params=None, job_dir=None, arrays=None):
        job_id = str(len(self.submitted) + 1)
        self.submitted.append((job_type, params, arrays))
        reply = self.replies.pop(0)
        if reply is not None:
            self.queue += [dict(m, id=job_id) for m in reply]
        return job_id

    def poll(self):
        out, self.queue = self.queue, []
        return out

    def cancel(self, job_id):
        self.cancelled.append(job_id)

    def kill(self):
        self.killed = True


def _progress(step, total=10):
    return {
        "type": P.PROGRESS,
        "phase": "train",
        "step": step,
        "total": total,
        "loss": 0.5,
        "eta": 3.0,
        "device": "CPU",
    }


def _meshes_file(tmp_path, levels):
    arrays = {"levels": np.asarray(levels, float)}
    for i, _ in enumerate(levels):
        V, F = primitives.icosphere(1.0 + i, 1)
        arrays[f"vertices_{i}"], arrays[f"faces_{i}"] = V, F
    path = tmp_path / f"meshes_{len(levels)}.npz"
    P.save_arrays(path, **arrays)
    return str(path)


def _source(name="Ball", field_file=None):
    V, F = primitives.icosphere(1.0, 2)
    return Source(name, "mesh", {"vertices": V, "faces": F}, field_file=field_file)


def _open_source(name="Cup"):
    """An icosphere with one face taken out: not closed, so its field is trained first."""
    V, F = primitives.icosphere(1.0, 2)
    return Source(name, "mesh", {"vertices": V, "faces": F[1:]})


def test_a_plan_trains_then_offsets_and_hands_back_bytes_and_meshes(tmp_path):
    field = tmp_path / "f.lipsdf"
    field.write_bytes(b"field bytes")
    meshes = _meshes_file(tmp_path, [0.1, -0.1])
    client = FakeClient(
        [
            [
                _progress(4),
                {"type": P.RESULT, "files": {"field": str(field)}, "info": {"seconds": 2}},
            ],
            [
                {"type": P.LOG, "message": "fell back to the CPU"},
                {"type": P.RESULT, "files": {"meshes": meshes}},
            ],
        ]
    )
    src = _source()
    job = Job(client, plan_offset([src], Settings(), [0.1, -0.1]), count_requests([src]))
    seen = []
    outcome = job.run(on_progress=lambda s: seen.append(s.fraction), interval=0)
    assert [t for t, _, _ in client.submitted] == ["train", "offset"]
    assert client.submitted[0][1]["mode"] == "signed" and client.submitted[0][2] is not None
    assert client.submitted[1][1]["field"] == str(field)
    assert client.submitted[1][1]["distances"] == [0.1, -0.1]
    trained = outcome.trained["Ball"]
    assert trained.data == b"field bytes" and trained.input_hash == src.input_hash
    (V0, F0, l0), (V1, F1, l1) = outcome.meshes["Ball"]
    assert (l0, l1) == (0.1, -0.1) and topology.is_watertight(F0) and len(V1) == len(V0)
    assert job.logs == ["fell back to the CPU"] and job.state == DONE


def test_a_source_with_a_field_is_not_trained_and_curves_are_unsigned(tmp_path):
    meshes = _meshes_file(tmp_path, [0.0])
    client = FakeClient([[{"type": P.RESULT, "files": {"meshes": meshes}}]])
    job = Job(client, plan_remesh([_source(field_file="/x.lipsdf")], Settings()))
    job.run(interval=0)
    assert [t for t, _, _ in client.submitted] == ["extract"]
    V, E = primitives.curve_circle(16)
    req = train_request(Source("C", "curve", {"vertices": V, "edges": E}), Settings())
    assert req.params["mode"] == "unsigned" and req.params["thickness"] == 0.01


def test_a_failing_request_ends_the_job_with_its_error_and_no_outcome(tmp_path):
    field = tmp_path / "f.lipsdf"
    field.write_bytes(b"x")
    client = FakeClient(
        [
            [{"type": P.RESULT, "files": {"field": str(field)}}],
            [
                {
                    "type": P.ERROR,
                    "kind": P.OUT_OF_MEMORY,
                    "message": "out of memory: lower the preset",
                }
            ],
        ]
    )
    s = Settings(preview=0)
    job = Job(client, plan_remesh([_open_source(), _open_source("Other")], s), 4)
    with pytest.raises(WorkerError, match="lower the preset"):
        job.run(interval=0)
    assert job.state == FAILED and job.outcome is None
    assert len(client.submitted) == 2  # nothing after the failure


def test_cancel_ends_the_job_even_when_a_result_races_it():
    client = FakeClient([[_progress(3)]])
    job = Job(client, plan_train([_source()], Settings()))
    job.poll()
    assert job.status.step == 3 and 0 < job.status.fraction < 1
    job.cancel()
    assert client.cancelled == ["1"]
    client.queue.append({"type": P.RESULT, "id": "1", "files": {"field": "/nowhere"}})
    assert job.poll() and job.state == CANCELLED
    with pytest.raises(CancelledError):
        job.result()


def test_a_worker_that_ignores_cancel_is_stopped(monkeypatch):
    monkeypatch.setattr(jobrunner, "CANCEL_GRACE", 0.0)
    client = FakeClient([None])
    job = Job(client, plan_train([_source()], Settings()))
    job.start()
    job.cancel()
    assert job.poll() and client.killed and job.state == CANCELLED


def test_bad_plans_are_refused_before_any_request():
    client = FakeClient([])
    job = Job(client, plan_csg([_source()], Settings(), "union"))
    with pytest.raises(BadInputError, match="two or more"):
        job.run(interval=0)
    job = Job(client, plan_offset([_source()], Settings(), []))
    with pytest.raises(BadInputError, match="at least one"):
        job.run(interval=0)
    assert client.submitted == []
    with pytest.raises(BadInputError):
        Source("x", "volume", {})


def test_geometry_hash_sees_any_change():
    src = _source()
    again = _source()
    assert src.input_hash == again.input_hash
    again.arrays["vertices"][5, 1] += 1e-6
    assert src.input_hash != again.input_hash
    assert geometry_hash("points", src.arrays) != src.input_hash


def test_status_text_reads_like_the_progress_bar():
    st = Status(
        label="Suzanne: training",
        phase="train",
        step=300,
        total=3000,
        loss=-0.0312,
        eta=12.4,
        device="CPU (2 threads)",
        stage=1,
        stages=2,
    )
    want = "Suzanne: training · train 300/3000 · loss -0.0312 · ETA 12 s · CPU (2 threads)"
    assert st.text() == want
    assert st.fraction == pytest.approx(0.55)
    # the phase is named from its start, before any step
    st = Status(label="Ball: remeshing from the input", phase="extract", step=0, total=1)
    assert st.text() == "Ball: remeshing from the input · extract"
    assert Status(label="Ball: training", phase="label", total=800).text() == (
        "Ball: training · label"
    )


def test_a_real_worker_runs_a_remesh_plan():
    V, F = primitives.icosphere(0.8, 3)
    src = Source("Ball", "mesh", {"vertices": V, "faces": F})
    overrides = {k: v for k, v in TINY.items() if k != "samples"}
    overrides.update(steps=300, samples={"n_uniform": 5000, "n_surface": 10000})
    client = WorkerClient(sys.executable)
    try:
        job = Job(client, plan_remesh([src], Settings(resolution=48, overrides=overrides)), 2)
        outcome = job.run(interval=0.05)
    finally:
        client.shutdown()
    assert "bpy" not in sys.modules
    Vr, Fr, level = outcome.meshes["Ball"][0]
    assert level == 0.0 and topology.is_watertight(Fr)
    r = np.linalg.norm(Vr, axis=1)
    assert abs(np.median(r) - 0.8) < 0.03
    assert outcome.trained["Ball"].data[:2] == b"PK"  # the .lipsdf file (a zip) itself


def test_clouds_carry_their_normals_and_noise_choices_and_meshes_none(tmp_path):
    P_ = primitives.torus_points(200)
    cloud = Source("Scan", "points", {"vertices": P_, "normals": P_})
    s = Settings(normals="estimate", noise=0.003)
    req = train_request(cloud, s)
    assert (req.params["normals"], req.params["noise"]) == ("estimate", 0.003)
    assert "normals" in req.arrays  # the cloud's own normals travel; the worker decides
    req = train_request(cloud, Settings())
    assert (req.params["normals"], req.params["noise"]) == ("auto", None)
    assert "normals" not in train_request(_source(), s).params
    summary = "normals: estimated for 200 points, 3 flipped by the orientation check"
    field = tmp_path / "f.lipsdf"
    field.write_bytes(b"field bytes")
    client = FakeClient(
        [[{"type": P.RESULT, "files": {"field": str(field)}, "info": {"summary": summary}}]]
    )
    outcome = Job(client, plan_train([cloud], s)).run(interval=0)
    trained = outcome.trained["Scan"]
    assert (trained.normals, trained.noise, trained.summary) == ("estimate", 0.003, summary)
    assert Settings(normals="estimate", noise=0.1).cloud_for("mesh") == ("auto", None)


# -- a closed mesh's remesh before its training (issue 22) ------------------------------------
def _exact_reply(tmp_path, V, F, empty=False, name="exact"):
    path = tmp_path / f"{name}.npz"
    P.save_arrays(path, levels=np.zeros(1), vertices_0=V, faces_0=F)
    info = {"detail_share": 1.0, "witnesses": "detail 100 %", "empty": empty}
    return [{"type": P.RESULT, "files": {"meshes": str(path)}, "info": info}]


def test_a_closed_mesh_is_delivered_before_its_field_is_trained(tmp_path):
    field = tmp_path / "f.lipsdf"
    field.write_bytes(b"field bytes")
    V, F = primitives.icosphere(1.0, 3)
    client = FakeClient(
        [
            _exact_reply(tmp_path, V, F),
            [_progress(4), {"type": P.RESULT, "files": {"field": str(field)}, "info": {}}],
        ]
    )
    src = _source()
    s = Settings(resolution=48, overrides={"steps": 100})
    job = Job(client, plan_remesh([src], s), count_requests([src]))
    job.poll()  # the exact remesh answers: delivered, and the training asked for at once
    (delivery,) = job.take_deliveries()
    assert delivery.keys == ["Ball"] and job.take_deliveries() == []
    Ve, Fe, level = delivery.outcome.meshes["Ball"][0]
    assert level == 0.0 and np.array_equal(Ve, V) and np.array_equal(Fe, F)
    assert topology.is_watertight(Fe)
    assert [t for t, _, _ in client.submitted] == [P.EXACT_REMESH, P.TRAIN]
    exact = client.submitted[0]
    assert exact[1]["resolution"] == 48 and exact[1]["overrides"] == {"steps": 100}
    assert exact[1]["detail"] and set(exact[2]) == {"vertices", "faces"}
    assert job.status.label == "Ball: training" and not job.done
    outcome = job.run(interval=0)
    # nothing extracted again: the field's remesh is this one
    assert len(client.submitted) == 2 and outcome.meshes["Ball"][0][0] is Ve
    assert outcome.trained["Ball"].data == b"field bytes"
    assert job.state == DONE


def test_only_closed_signed_meshes_without_a_field_are_remeshed_first(tmp_path):
    V, F = primitives.icosphere(1.0, 2)
    Vt, Et = primitives.curve_circle(16)
    closed = _source()
    cases = [
        (_open_source(), Settings(preview=0)),  # a hole
        (
            Source(
                "Soup",
                "mesh",
                {
                    "vertices": V[F].reshape(-1, 3)[:-3],
                    "faces": np.arange(len(F) * 3 - 3).reshape(-1, 3),
                },
            ),
            Settings(preview=0),
        ),  # an unwelded soup with a missing triangle  # fmt: skip
        (Source("Scan", "points", {"vertices": V}), Settings(preview=0)),
        (Source("Wire", "curve", {"vertices": Vt, "edges": Et}), Settings(preview=0)),
        (closed, Settings(mode="unsigned", preview=0)),
        (closed, Settings(detail=False, preview=0)),
    ]
    for src, s in cases:
        first = next(plan_remesh([src], s))
        assert first.type == P.TRAIN, (src.name, s)
    assert next(plan_remesh([_source(field_file="/x.lipsdf")], Settings())).type == P.EXTRACT
    assert next(plan_remesh([closed], Settings())).type == P.EXACT_REMESH
    # an unwelded closed mesh (split at seams) is still closed
    split = Source("Split", "mesh", {"vertices": V[F].reshape(-1, 3),
                                     "faces": np.arange(len(F) * 3).reshape(-1, 3)})  # fmt: skip
    assert next(plan_remesh([split], Settings())).type == P.EXACT_REMESH


def test_an_empty_exact_remesh_falls_back_to_training_first(tmp_path):
    field = tmp_path / "f.lipsdf"
    field.write_bytes(b"x")
    meshes = _meshes_file(tmp_path, [0.0])
    empty = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    client = FakeClient(
        [
            _exact_reply(tmp_path, *empty, empty=True, name="preview"),
            _exact_reply(tmp_path, *empty, empty=True),
            [{"type": P.RESULT, "files": {"field": str(field)}}],
            [{"type": P.RESULT, "files": {"meshes": meshes}}],
        ]
    )
    job = Job(client, plan_remesh([_source()], Settings()))
    outcome = job.run(interval=0)
    types = [t for t, _, _ in client.submitted]
    assert types == [P.EXACT_REMESH, P.EXACT_REMESH, P.TRAIN, P.EXTRACT]
    assert job.deliveries == [] and len(outcome.meshes["Ball"][0][1]) > 0


def test_closed_meshes_show_a_coarse_preview_first_then_the_remesh_in_its_place(tmp_path):
    """Every preview before every full remesh, each delivered not final, in an outcome of
    its own; then the full remeshes (final), then the trainings; nothing extracted again."""
    field = tmp_path / "f.lipsdf"
    field.write_bytes(b"field bytes")
    coarse = primitives.icosphere(1.0, 1)
    fine = primitives.icosphere(1.0, 3)
    trained = [{"type": P.RESULT, "files": {"field": str(field)}, "info": {}}]
    client = FakeClient(
        [
            _exact_reply(tmp_path, *coarse, name="p1"),
            _exact_reply(tmp_path, *coarse, name="p2"),
            _exact_reply(tmp_path, *fine, name="f1"),
            _exact_reply(tmp_path, *fine, name="f2"),
            trained,
            trained,
        ]
    )
    sources = [_source("Ball"), _source("Twin")]
    s = Settings(resolution=48, preview=24, faces=500)
    job = Job(client, plan_remesh(sources, s), remesh_requests(sources, s))
    assert job.status.stages == 6
    job.poll()  # the first preview answers: delivered, the second asked for at once
    (first,) = job.take_deliveries()
    assert first.keys == ["Ball"] and not first.final
    assert client.submitted[-1][1]["resolution"] == 24 and job.status.label == "Twin: preview"
    # the preview: marching cubes at its own resolution, every triangle, the same input
    preview = client.submitted[0][1]
    assert (preview["resolution"], preview["sharp"], preview["faces"]) == (24, False, 0)
    assert preview["detail"] and set(client.submitted[0][2]) == {"vertices", "faces"}
    early = [first]
    outcome = job.run(interval=0, on_delivery=early.append)
    assert [(d.keys, d.final) for d in early] == [
        (["Ball"], False),
        (["Twin"], False),
        (["Ball"], True),
        (["Twin"], True),
    ]
    assert np.array_equal(early[0].outcome.meshes["Ball"][0][1], coarse[1])
    assert "Ball" not in early[1].outcome.meshes  # each preview in an outcome of its own
    full = [p for t, p, _ in client.submitted[2:4]]
    assert all((p["resolution"], p["sharp"], p["faces"]) == (48, True, 500) for p in full)
    types = [t for t, _, _ in client.submitted]
    assert types == [P.EXACT_REMESH] * 4 + [P.TRAIN] * 2 and len(types) == 6
    assert all(np.array_equal(outcome.meshes[n][0][1], fine[1]) for n in ("Ball", "Twin"))
    assert early[2].outcome is outcome and set(outcome.trained) == {"Ball", "Twin"}


def test_a_preview_only_where_the_remesh_is_finer_than_it():
    src = _source()
    assert preview_request(src, Settings(resolution=48)) is None  # default preview: 64 cells
    assert preview_request(src, Settings(resolution=64)) is None
    assert preview_request(src, Settings(resolution=65)).params["resolution"] == 64
    assert preview_request(src, Settings(resolution=256, preview=0)) is None
    # the preset's resolution (fast: 192), or its override
    assert preview_request(src, Settings()).label == "Ball: preview"
    assert preview_request(src, Settings(overrides={"resolution": 32})) is None
    s = Settings(resolution=48)
    assert remesh_requests([src], s) == count_requests([src]) == 2
    assert remesh_requests([src, _open_source()], Settings()) == 6
    assert remesh_requests([_source(field_file="/x.lipsdf")], Settings()) == 1


def test_meshes_that_train_first_show_a_winding_number_preview():
    """An open mesh or soup in signed mode shows a preview before its training, at the
    preview's resolution or the remesh's if that is coarser; clouds, curves, unsigned mode,
    sources with a field and a preview of 0 get none."""
    cup = _open_source()
    r = preview_request(cup, Settings())
    assert r.type == P.WINDING_PREVIEW and r.params["resolution"] == 64
    assert r.label == "Cup: preview" and set(r.arrays) == {"vertices", "faces"}
    assert preview_request(cup, Settings(resolution=48)).params["resolution"] == 48
    assert preview_request(cup, Settings(preview=0)) is None
    assert preview_request(cup, Settings(mode="unsigned")) is None
    V, F = primitives.icosphere(1.0, 2)
    assert preview_request(Source("Scan", "points", {"vertices": V}), Settings()) is None
    Vt, Et = primitives.curve_circle(16)
    wire = Source("Wire", "curve", {"vertices": Vt, "edges": Et})
    assert preview_request(wire, Settings()) is None
    with_field = Source("Cup", "mesh", cup.arrays, field_file="/x.lipsdf")
    assert preview_request(with_field, Settings()) is None
    # a closed mesh without detail trains first, so it is previewed the same way
    assert preview_request(_source(), Settings(detail=False)).type == P.WINDING_PREVIEW
    types = [r.type for r in _first_requests(plan_remesh([cup, _source()], Settings()), 3)]
    assert types == [P.WINDING_PREVIEW, P.EXACT_REMESH, P.EXACT_REMESH]


def _first_requests(plan, n):
    """The first ``n`` requests of a plan, each answered with an empty result."""
    out, request = [], next(plan)
    while len(out) < n:
        out.append(request)
        request = plan.send({"files": {"meshes": None}, "info": {"empty": True}})
    return out


class _Recording:
    """A real client that remembers the types of the requests submitted to it."""

    def __init__(self, client):
        self.client, self.types = client, []

    def submit(self, job_type, *args, **kw):
        self.types.append(job_type)
        return self.client.submit(job_type, *args, **kw)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_real_worker_delivers_the_final_remesh_early_and_trains_the_same_field(tmp_path):
    """Closed torus: a coarse preview first (closed, within one of its cells of the input),
    then the final mesh, which equals the trained field's remesh (arrays equal), and the
    field trained after the remesh equals one trained alone (same seed, fair share off).
    An open mesh shows its winding-number preview, then is trained and extracted."""
    from lipsdf_blender.core.fields.detail import exact_field
    from lipsdf_blender.core.fields.field import Field
    from lipsdf_blender.core.inputs.geometry import Geometry
    from lipsdf_blender.core.surfaces.extract import cell_size
    from lipsdf_blender.core.surfaces.metrics import chamfer_hausdorff

    V, F = primitives.torus_mesh(0.8, 0.25, 32, 16)
    src = Source("Torus", "mesh", {"vertices": V, "faces": F})
    overrides = {k: v for k, v in TINY.items() if k != "samples"}
    overrides.update(steps=150, samples={"n_uniform": 4000, "n_surface": 8000})
    s = Settings(resolution=48, preview=24, overrides=overrides)
    env = {"LIPSDF_FAIR_SHARE": "0", "LIPSDF_WORKER_THREADS": "1"}
    client = _Recording(WorkerClient(sys.executable, env=env))
    early = []
    try:
        job = Job(client, plan_remesh([src], s), remesh_requests([src], s))
        outcome = job.run(interval=0.05, on_delivery=early.append)
        assert client.types == [P.EXACT_REMESH, P.EXACT_REMESH, P.TRAIN]
        preview, delivery = early
        assert not preview.final and delivery.final
        # the preview: closed, one piece, within one of its own cells of the input
        Vp, Fp, _ = preview.outcome.meshes["Torus"][0]
        assert topology.is_watertight(Fp) and topology.connected_components(Fp) == 1
        cell = cell_size(exact_field(Geometry.mesh(V, F)), 24)
        assert chamfer_hausdorff(Vp, Fp, V, F)["hausdorff"] < cell
        assert 0 < len(Fp) < len(delivery.outcome.meshes["Torus"][0][1]) / 3
        Ve, Fe, _ = delivery.outcome.meshes["Torus"][0]
        assert topology.is_watertight(Fe) and topology.connected_components(Fe) == 1
        # the remesh of the field trained after it, through the worker as before this issue
        after = tmp_path / "after.lipsdf"
        after.write_bytes(outcome.trained["Torus"].data)
        params = {"field": str(after), "levels": [0.0], "resolution": 48, "detail": True}
        final = client.client.run(P.EXTRACT, params, tmp_path / "x")
        Vf, Ff, _ = P.load_meshes(final["files"]["meshes"])[0]
        assert np.array_equal(Ve, Vf) and np.array_equal(Fe, Ff)
        # the torus: every vertex within a hundredth of the tube's surface
        rho = np.hypot(np.linalg.norm(Ve[:, :2], axis=1) - 0.8, Ve[:, 2])
        assert np.abs(rho - 0.25).max() < 0.01
        # an open mesh: a preview (closed, its hole closed, within a cell of the sphere),
        # then trained and extracted
        cup = _open_source()
        client.types.clear()
        late = []
        job = Job(client, plan_remesh([cup], s), remesh_requests([cup], s))
        cup_outcome = job.run(interval=0.05, on_delivery=late.append)
        assert client.types == [P.WINDING_PREVIEW, P.TRAIN, P.EXTRACT]
        (shown,) = late
        assert not shown.final
        Vp, Fp, _ = shown.outcome.meshes["Cup"][0]
        assert topology.is_watertight(Fp) and topology.connected_components(Fp) == 1
        radius = np.linalg.norm(Vp, axis=1)
        assert np.abs(radius - 1.0).max() < 2.0 / 24  # a cell of the preview's grid
        Vc, Fc, _ = cup_outcome.meshes["Cup"][0]
        assert topology.is_watertight(Fc)
        assert abs(np.median(np.linalg.norm(Vc, axis=1)) - 1.0) < 0.03
        # asked directly, the worker refuses an exact remesh of an open mesh
        with pytest.raises(WorkerError) as err:
            client.client.run(P.EXACT_REMESH, {}, tmp_path / "open", arrays=cup.arrays)
        assert err.value.kind == P.BAD_INPUT and "not closed" in str(err.value)
    finally:
        client.shutdown()
    # a field trained alone, in a fresh worker, before any remesh
    client = WorkerClient(sys.executable, env=env)
    try:
        alone = Job(client, plan_train([src], s)).run(interval=0.05)
    finally:
        client.shutdown()
    before = tmp_path / "before.lipsdf"
    before.write_bytes(alone.trained["Torus"].data)
    a, b = Field.load(after), Field.load(before)
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(pa, pb)
