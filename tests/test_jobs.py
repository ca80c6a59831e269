"""The add-on's job driver (``lipsdf_blender.jobrunner``) and plans without Blender.

A scripted fake client stands in for the worker, so every path of the state machine is
reached: a chain of requests, a failing request in the middle, a cancel, a result that races a
cancel, and a worker that never answers a cancel. One test runs a real worker end to end.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import TINY

from lipsdf_blender import jobrunner  # these modules must import without bpy
from lipsdf_blender.blender.plans.build import plan_csg, plan_offset, plan_remesh, plan_train
from lipsdf_blender.blender.plans.common import (
    Settings,
    Source,
    count_requests,
    geometry_hash,
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
    job = Job(client, plan_remesh([_source(), _source("Other")], Settings()), 4)
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
