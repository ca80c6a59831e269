"""Jobs forwarded by the worker to a Ray cluster: a real local Ray head (2 CPUs), real workers.

The local worker gets ``LIPSDF_WORKER_RAY`` and sends each job to an actor on the head; the
geometry that comes back must be the geometry a local worker makes. The lost-connection test
stops the head and starts it again, so it stays last in this file.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import WORKER_ENV

from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.worker import protocol as P
from lipsdf_blender.worker.client import JobCancelledError, WorkerClient, WorkerError

ROOT = Path(__file__).resolve().parents[1]
RADIUS = 0.8
SAMPLES = {"n_uniform": 2000, "n_surface": 4000}
OVERRIDES = {"depth": 3, "width": 16, "steps": 150, "batch_size": 256, "samples": SAMPLES}
TRAIN = {"preset": "fast", "device": "cpu", "seed": 3, "overrides": OVERRIDES}
LONG = dict(TRAIN, overrides=dict(OVERRIDES, steps=1_000_000))


def sphere():
    return primitives.icosphere(RADIUS, 3)


def worker_env(ray_head, address=None, fallback=False) -> dict:
    return {
        **ray_head["env"],
        **WORKER_ENV,
        "LIPSDF_WORKER_RAY": address or ray_head["client"],
        "LIPSDF_WORKER_RAY_FALLBACK": "1" if fallback else "0",
    }


def closed_port() -> int:
    """A port on this machine where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_listening(address: str, timeout=60.0) -> None:
    """Wait until the Ray Client port of a restarted head takes connections."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for(client, job, phase, timeout=60.0) -> list[dict]:
    """Poll until ``job`` reports progress in ``phase``; return the messages seen."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in client.poll():
            seen.append(m)
            if m.get("id") == job and m["type"] == P.PROGRESS and m["phase"] == phase:
                return seen
            assert not (m.get("id") == job and m["type"] in P.FINAL), m
        time.sleep(0.02)
    raise AssertionError(f"no {phase} progress from job {job}: {seen[-3:]}")


@pytest.fixture(scope="module")
def remote(ray_head):
    """A worker that forwards its jobs to the test head (no fall-back)."""
    c = WorkerClient(env=worker_env(ray_head))
    c.start()
    yield c
    c.shutdown()


def test_the_client_and_the_preferences_modules_do_not_import_ray():
    code = (
        "import sys, lipsdf_blender.worker.client, lipsdf_blender.worker.remote;"
        "import lipsdf_blender.worker.environment;"
        "bad = [m for m in ('ray', 'torch', 'bpy') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_jobs_run_on_the_cluster_and_give_the_local_geometry(remote, client, ray_head, tmp_path):
    assert remote.handshake["remote"] == {"address": ray_head["client"], "fallback": False}
    V, F = sphere()
    seen, times = [], []

    def heard(m):
        seen.append(m)
        times.append(time.monotonic())

    there = remote.run(
        "train", TRAIN, tmp_path / "r", arrays={"vertices": V, "faces": F}, on_progress=heard
    )
    here = client.run("train", TRAIN, tmp_path / "l", arrays={"vertices": V, "faces": F})
    phases = [m["phase"] for m in seen if m["type"] == P.PROGRESS]
    assert phases[0] == "connect" and "label" in phases and phases[-1] == "train"
    steps = [m["step"] for m in seen if m["type"] == P.PROGRESS and m["phase"] == "train"]
    assert steps[-1] == OVERRIDES["steps"]
    # The heartbeat holds while the worker connects, starts the actor and forwards.
    assert max(np.diff(times)) < 1.5
    ran_on = there["info"]["ran_on"]
    assert ran_on["cluster"] == ray_head["client"] and ran_on["node"] and ran_on["device"]
    assert "ran_on" not in here["info"]
    # The field came back into the local job folder under the name a local run gives it.
    path = Path(there["files"]["field"])
    assert path == (tmp_path / "r" / f"field_{there['id']}.lipsdf").resolve() and path.is_file()
    # Same seed, input, one thread, CPU: the same network to float32 rounding.
    X = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    field, local = Field.load(path), Field.load(here["files"]["field"])
    np.testing.assert_allclose(field.evaluate(X), local.evaluate(X), atol=1e-5)

    params = {"field": str(path), "resolution": 32}
    ext = remote.run("extract", params, tmp_path / "r")
    ext_local = client.run("extract", params, tmp_path / "l")
    assert ext["info"]["cached"] == [True]  # the trained field stayed loaded on the cluster
    ((Vr, Fr, _),) = P.load_meshes(ext["files"]["meshes"])
    ((Vl, Fl, _),) = P.load_meshes(ext_local["files"]["meshes"])
    assert Path(ext["files"]["meshes"]).parent == (tmp_path / "r").resolve()
    assert len(Fr) > 1000
    np.testing.assert_array_equal(Fr, Fl)
    np.testing.assert_allclose(Vr, Vl, atol=1e-6)
    r = np.linalg.norm(Vr, axis=1)
    assert np.abs(r - RADIUS).max() < 0.02, (r.min(), r.max())

    # A field named by an absolute path outside the job folder (the add-on's cache) goes
    # along too, once: the next job on it hits the cluster's field and surface caches.
    cache = tmp_path / "cache"
    cache.mkdir()
    copy = cache / "ball.lipsdf"
    copy.write_bytes(path.read_bytes())
    q = {"field": str(copy), "points": "p.npz", "exact": True, "resolution": 24}
    (tmp_path / "q").mkdir()
    P.save_arrays(tmp_path / "q" / "p.npz", points=np.array([[0.0, 0, 0], [1.2, 0, 0]]))
    first = remote.run("query", q, tmp_path / "q")
    again = remote.run("query", dict(q, output="again.npz"), tmp_path / "q")
    assert first["info"].get("surface_cached") is False
    assert again["info"]["cached"] == [True] and again["info"]["surface_cached"] is True
    values = P.load_arrays(again["files"]["values"])["values"]
    np.testing.assert_allclose(values, [-RADIUS, 1.2 - RADIUS], atol=0.02)


def test_cancel_reaches_the_job_on_the_cluster(remote, tmp_path):
    V, F = sphere()
    job = remote.submit("train", LONG, tmp_path / "a", arrays={"vertices": V, "faces": F})
    wait_for(remote, job, "train")
    t0 = time.monotonic()
    remote.cancel(job)
    with pytest.raises(JobCancelledError) as err:
        remote.wait(job, timeout=10)
    assert time.monotonic() - t0 < 3.0
    assert err.value.kind == P.CANCELLED
    # The answer is the remote job's own (its traceback runs through the training there),
    # not the local worker giving up on a cluster that never confirmed.
    assert "core/training/train.py" in err.value.traceback and "_follow" not in err.value.traceback
    # The actor is free again: the next job runs there at once.
    r = remote.run("train", TRAIN, tmp_path / "b", arrays={"vertices": V, "faces": F}, timeout=60)
    assert r["info"]["ran_on"]["node"] and Path(r["files"]["field"]).is_file()


def test_errors_on_the_cluster_keep_their_kind_and_message(remote, client, tmp_path):
    V, F = sphere()
    V = V.copy()
    V[5, 1] = np.nan
    errors = []
    for c, d in ((remote, "r"), (client, "l")):
        with pytest.raises(WorkerError) as err:
            c.run("train", TRAIN, tmp_path / d, arrays={"vertices": V, "faces": F}, timeout=60)
        errors.append(err.value)
    assert errors[0].kind == errors[1].kind == P.BAD_INPUT
    assert str(errors[0]) == str(errors[1]) and "NaN" in str(errors[0])
    missing = str(tmp_path / "missing.lipsdf")
    with pytest.raises(WorkerError) as err:
        remote.run("extract", {"field": missing}, tmp_path, timeout=60)
    assert err.value.kind == P.FIELD_FILE and "missing.lipsdf" in str(err.value)


def test_the_files_a_request_names_are_collected(tmp_path):
    from lipsdf_blender.worker import remote as R
    from lipsdf_blender.worker.running import Job

    (tmp_path / "job" / "sub").mkdir(parents=True)
    (tmp_path / "job" / "input.npz").write_bytes(b"in")
    (tmp_path / "job" / "sub" / "p.npz").write_bytes(b"pts")
    (tmp_path / "job" / "out.npz").write_bytes(b"old result")
    (tmp_path / "job" / "a.lipsdf").write_bytes(b"field a")
    (tmp_path / "cache.lipsdf").write_bytes(b"field b")
    (tmp_path / "secret.npz").write_bytes(b"not ours")
    params = {
        "input": "input.npz",
        "points": "sub/p.npz",
        "output": "out.npz",  # written, never read
        "fields": ["a.lipsdf", str(tmp_path / "cache.lipsdf"), "a.lipsdf"],
        "init": "../cache.lipsdf",  # out of the job folder: the worker refuses it
        "other": str(tmp_path / "secret.npz"),  # absolute, not a field
        "preset": "fast",
    }
    job = Job({"id": "1", "type": "csg", "params": params, "job_dir": str(tmp_path / "job")})
    inputs, fields, refs = R.collect_files(job)
    assert inputs == {"input.npz": b"in", "sub/p.npz": b"pts"}
    a, b = (R.stored_name(x, ".lipsdf") for x in (b"field a", b"field b"))
    assert fields == {a: b"field a", b: b"field b"}
    assert refs == [("fields", 0, a), ("fields", 1, b), ("fields", 2, a)]


def test_bad_settings_are_refused_with_a_message(ray_head):
    from lipsdf_blender.worker import remote as R
    from lipsdf_blender.worker.client import WorkerCrashedError

    assert R.from_environment(None, {"LIPSDF_WORKER_RAY": " "}) is None
    f = R.from_environment(None, {"LIPSDF_WORKER_RAY": "ray://h:1"})
    assert f.describe() == {"address": "ray://h:1", "fallback": True}
    env = dict(worker_env(ray_head), LIPSDF_WORKER_RAY_FALLBACK="maybe")
    with pytest.raises(WorkerCrashedError) as err:
        WorkerClient(env=env).start()
    assert "LIPSDF_WORKER_RAY_FALLBACK must be 1 or 0, got 'maybe'" in str(err.value)


class RefusingRay:
    """A stand-in for the ``ray`` module whose Ray Client server refuses the first
    ``refusals`` starts, as one does when it cannot start the client's own server."""

    def __init__(self, refusals):
        self.refusals, self.inits, self.shutdowns, self.up = refusals, 0, 0, False

    def is_initialized(self):
        return self.up

    def init(self, address, **kw):
        self.inits += 1
        assert kw["runtime_env"]["py_modules"]
        if self.inits <= self.refusals:
            raise ConnectionAbortedError("Initialization failure from server:\nStarting Ray "
                                         "client server failed.")  # fmt: skip
        self.up = True

    def shutdown(self):
        self.shutdowns += 1

    def cluster_resources(self):
        return {"CPU": 2.0}

    def nodes(self):
        return [{"Alive": True}]

    def get_runtime_context(self):
        return types.SimpleNamespace(gcs_address="127.0.0.1:6379")


def test_a_refused_start_is_tried_again(monkeypatch):
    from lipsdf_blender.worker import cluster

    monkeypatch.setattr(cluster, "INIT_RETRY_PAUSE", 0.0)
    monkeypatch.setattr(cluster, "probe", lambda address: None)
    twice = RefusingRay(cluster.INIT_TRIES - 1)
    monkeypatch.setattr(cluster, "ray_module", lambda: twice)
    info = cluster.connect("ray://10.0.0.1:10001")
    assert (twice.inits, twice.shutdowns) == (cluster.INIT_TRIES, cluster.INIT_TRIES - 1)
    assert info == {"address": "127.0.0.1:6379", "cpus": 2.0, "gpus": 0.0, "nodes": 1}
    always = RefusingRay(5)
    monkeypatch.setattr(cluster, "ray_module", lambda: always)
    with pytest.raises(cluster.ClusterError) as err:
        cluster.connect("ray://10.0.0.1:10001")
    assert always.inits == cluster.INIT_TRIES
    assert "cannot reach the Ray cluster at ray://10.0.0.1:10001" in str(err.value)
    assert "Starting Ray client server failed" in str(err.value)


def test_an_address_where_nothing_listens(ray_head, tmp_path):
    address = f"ray://127.0.0.1:{closed_port()}"
    V, F = sphere()
    arrays = {"vertices": V, "faces": F}
    with WorkerClient(env=worker_env(ray_head, address)) as c:
        t0 = time.monotonic()
        with pytest.raises(WorkerError) as err:
            c.run("train", TRAIN, tmp_path / "a", arrays=arrays, timeout=60)
        assert err.value.kind == P.REMOTE
        assert address in str(err.value) and "preferences" in str(err.value)
        assert time.monotonic() - t0 < 20  # not Ray Client's 30 s of retries
    with WorkerClient(env=worker_env(ray_head, address, fallback=True)) as c:
        seen = []
        r = c.run("train", TRAIN, tmp_path / "b", arrays=arrays, on_progress=seen.append)
        logs = [m for m in seen if m["type"] == P.LOG]
        assert logs and logs[0]["level"] == "warning" and address in logs[0]["message"]
        assert "this computer" in logs[0]["message"]
        assert "ran_on" not in r["info"]
        ((Vm, _, _),) = P.load_meshes(
            c.run("extract", {"field": r["files"]["field"], "resolution": 32}, tmp_path)["files"][
                "meshes"
            ]
        )
        assert np.abs(np.linalg.norm(Vm, axis=1) - RADIUS).max() < 0.02


def test_a_lost_cluster_ends_the_job_with_kind_remote(remote, ray_head, tmp_path):
    # Last in the file: it stops the head. The module's worker goes first, so its actor
    # leaves the head's 2 CPUs to the two workers here.
    remote.shutdown()
    V, F = sphere()
    arrays = {"vertices": V, "faces": F}
    falls_back = WorkerClient(env=worker_env(ray_head, fallback=True))
    retries = WorkerClient(env=worker_env(ray_head, fallback=False))
    try:
        jobs = [
            (c, c.submit("train", LONG, tmp_path / str(i), arrays=arrays))
            for i, c in enumerate((falls_back, retries))
        ]
        for c, job in jobs:
            wait_for(c, job, "train", timeout=90)
        ray_head["stop"]()
        errors = []
        for c, job in jobs:
            with pytest.raises(WorkerError) as err:
                c.wait(job, timeout=60)
            errors.append(err.value)
        for e in errors:
            assert e.kind == P.REMOTE and ray_head["client"] in str(e)
            assert "lost the connection" in str(e)
        assert "the next jobs run on this computer" in str(errors[0]).lower()
        assert "next job tries to connect again" in str(errors[1])

        # Fall-back: the next job runs here, and gives a sphere.
        r = falls_back.run("train", TRAIN, tmp_path / "f", arrays=arrays, timeout=60)
        assert "ran_on" not in r["info"]
        x = Field.load(r["files"]["field"]).evaluate(np.array([[0.0, 0, 0], [1.5, 0, 0]]))
        assert x[0] < 0 < x[1]
        # No fall-back: the next job tries again, fails while the head is down ...
        with pytest.raises(WorkerError) as err:
            retries.run("train", TRAIN, tmp_path / "g", arrays=arrays, timeout=60)
        assert err.value.kind == P.REMOTE and "cannot reach" in str(err.value)
    finally:
        ray_head["start"]()
    try:
        wait_until_listening(ray_head["client"])
        # ... and runs there again once it is back.
        r = retries.run("train", TRAIN, tmp_path / "h", arrays=arrays, timeout=120)
        assert r["info"]["ran_on"]["cluster"] == ray_head["client"]
    finally:
        falls_back.shutdown()
        retries.shutdown()
