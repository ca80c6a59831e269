"""The worker process: real subprocesses on the CPU with a tiny network."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import WORKER_ENV, sphere_cloud

from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.surfaces.extract import extract_levels
from lipsdf_blender.core.surfaces.remesh import offset_surfaces, remesh
from lipsdf_blender.core.training.presets import SampleConfig
from lipsdf_blender.core.training.summary import witness_summary
from lipsdf_blender.core.training.train import train_field
from lipsdf_blender.worker import protocol as P
from lipsdf_blender.worker.client import (
    JobCancelledError,
    WorkerClient,
    WorkerCrashedError,
    WorkerError,
)

ROOT = Path(__file__).resolve().parents[1]
# One thread: on a shared 2-core machine two threads per process slow tiny networks down
# several times over. The direct core calls compared with the worker use one thread too.
ENV = WORKER_ENV
SAMPLES = {"n_uniform": 2000, "n_surface": 4000}
OVERRIDES = {"depth": 3, "width": 16, "steps": 100, "batch_size": 256, "samples": SAMPLES}
TRAIN = {"preset": "fast", "device": "cpu", "seed": 3, "overrides": OVERRIDES}
LONG = dict(TRAIN, overrides=dict(OVERRIDES, steps=1_000_000))


def sphere():
    return primitives.icosphere(0.8, 3)


@pytest.fixture(scope="module")
def trained(client, tmp_path_factory):
    V, F = sphere()
    d = tmp_path_factory.mktemp("train")
    seen = []
    result = client.run(
        "train",
        TRAIN,
        job_dir=d,
        arrays={"vertices": V, "faces": F},
        on_progress=lambda m: seen.append((time.monotonic(), m)),
    )
    return result, seen, d


@pytest.fixture
def one_thread():
    """Direct core calls on one thread, as the worker runs: a barely trained field is near
    zero in wide regions, where the rounding of another summation order flips signs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def wait_for(client, job, phase, timeout=30.0):
    """Poll until ``job`` reports progress in ``phase``; return the other messages seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in client.poll():
            if m.get("id") == job and m["type"] == P.PROGRESS and m["phase"] == phase:
                return
            assert not (m.get("id") == job and m["type"] in P.FINAL), m
        time.sleep(0.02)
    raise AssertionError(f"no {phase} progress from job {job}")


def test_client_imports_neither_torch_nor_bpy():
    code = (
        "import sys, lipsdf_blender.worker.client, lipsdf_blender.worker.protocol;"
        "bad = [m for m in ('torch', 'bpy', 'igl') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_handshake(client):
    hs = client.handshake
    assert hs["type"] == P.HANDSHAKE and hs["protocol"] == P.PROTOCOL_VERSION
    assert hs["pid"] == client.pid
    assert hs["torch"].startswith("2.") and hs["numpy"] and hs["igl"] != "unknown"
    assert hs["python"].count(".") == 2
    dev = hs["device"]
    assert dev["type"] in ("cpu", "cuda", "mps") and dev["name"]
    if dev["type"] == "cpu":
        assert dev["why_cpu"]
    # the thread count follows the free cores
    assert hs["threads"] == {"max": 1, "fair_share": True}


def test_train_progress_and_result_match_core(trained, one_thread):
    result, seen, d = trained
    msgs = [m for _, m in seen if m["type"] == P.PROGRESS]
    phases = [m["phase"] for m in msgs]
    assert phases[0] == "label" and phases[-1] == "train"
    assert phases.index("train") > max(i for i, p in enumerate(phases) if p == "label")
    steps = [m["step"] for m in msgs if m["phase"] == "train"]
    assert steps == sorted(steps) and steps[-1] == msgs[-1]["total"] == OVERRIDES["steps"]
    assert all(m["device"] for m in msgs)
    times = [t for t, _ in seen]
    assert max(np.diff(times), default=0) < 1.5  # the heartbeat: at least one a second

    field = Field.load(result["files"]["field"])
    V, F = sphere()
    kw = dict(OVERRIDES, samples=SampleConfig(**SAMPLES))
    direct = train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=3, **kw)
    # Same seed, input, thread count and CPU: the training is deterministic, so the values
    # agree to float32 rounding.
    X = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    np.testing.assert_allclose(field.evaluate(X), direct.evaluate(X), atol=1e-5)


def test_offset_and_extract_match_core_and_reuse_the_field(client, trained, one_thread):
    result, _, d = trained
    path = result["files"]["field"]
    off = client.run("offset", {"field": path, "distances": [0.0, 0.05], "resolution": 24}, d)
    assert off["info"]["cached"] == [True]  # kept loaded since the training
    ext = client.run("extract", {"field": path, "levels": [0.02], "resolution": 24}, d)
    field = Field.load(path)
    for (V, F, _), r in zip(
        P.load_meshes(off["files"]["meshes"]),
        offset_surfaces(field, [0.0, 0.05], resolution=24),
        strict=True,
    ):
        assert len(F) > 0
        np.testing.assert_array_equal(F, r.faces)
        np.testing.assert_allclose(V, r.vertices, atol=1e-6)
    ((V, F, level),) = P.load_meshes(ext["files"]["meshes"])
    assert level == 0.02
    (r,) = extract_levels(field, [0.02], resolution=24)
    np.testing.assert_array_equal(F, r.faces)
    np.testing.assert_allclose(V, r.vertices, atol=1e-6)
    # A remesh (level 0) says how much of it came from the input, in numbers and words.
    ext = client.run("extract", {"field": path, "resolution": 24}, d)
    share = remesh(field, 24).detail_share
    assert ext["info"]["detail_share"] == pytest.approx(share) and share > 0.9
    assert ext["info"]["witnesses"] == witness_summary(share)


def test_csg_sample_project(client, trained):
    result, _, d = trained
    path = result["files"]["field"]
    shift = np.eye(4)
    shift[0, 3] = 0.5
    csg = client.run(
        "csg",
        {
            "op": "union",
            "fields": [path, path],
            "matrices": [np.eye(4).tolist(), shift.tolist()],
            "resolution": 24,
        },
        d,
    )
    ((V, _, _),) = P.load_meshes(csg["files"]["meshes"])
    assert V[:, 0].max() > 1.1  # the shifted copy reaches further along x
    s = client.run("sample", {"field": path, "n": 50, "resolution": 16}, d)
    pts = P.load_arrays(s["files"]["points"])["points"]
    assert pts.shape == (50, 3)
    P.save_arrays(Path(d) / "p.npz", points=pts * 1.3)
    pr = client.run("project", {"field": path, "points": "p.npz"}, d)
    Q = P.load_arrays(pr["files"]["points"])["points"]
    assert np.abs(Field.load(path).evaluate(Q)).max() < 1e-3


def test_cancel_running_and_queued_jobs(client, tmp_path):
    V, F = sphere()
    a = client.submit("train", LONG, tmp_path / "a", arrays={"vertices": V, "faces": F})
    b = client.submit("train", LONG, tmp_path / "b", arrays={"vertices": V, "faces": F})
    wait_for(client, a, "train")
    client.cancel(b)  # queued: answered at once
    with pytest.raises(JobCancelledError):
        client.wait(b, timeout=1.0)
    t0 = time.monotonic()
    client.cancel(a)
    with pytest.raises(JobCancelledError) as err:
        client.wait(a, timeout=5.0)
    assert time.monotonic() - t0 < 1.0
    assert err.value.kind == P.CANCELLED
    # The worker is still usable.
    pid = client.pid
    s = client.run(
        "sample",
        {"field": str(_any_field(client, tmp_path)), "n": 10, "resolution": 16},
        tmp_path,
        timeout=60,
    )
    assert s["type"] == P.RESULT and client.pid == pid


def _any_field(client, d) -> Path:
    V, F = sphere()
    r = client.run("train", TRAIN, Path(d) / "f", arrays={"vertices": V, "faces": F})
    return Path(r["files"]["field"])


def test_two_queued_jobs_complete_in_order(client, trained):
    result, _, d = trained
    path = result["files"]["field"]
    a = client.submit("extract", {"field": path, "resolution": 24, "output": "a.npz"}, d)
    b = client.submit("extract", {"field": path, "resolution": 20, "output": "b.npz"}, d)
    finals = []
    deadline = time.monotonic() + 60
    while len(finals) < 2 and time.monotonic() < deadline:
        finals += [m for m in client.poll() if m["type"] in P.FINAL and m["id"] in (a, b)]
        time.sleep(0.02)
    assert [m["id"] for m in finals] == [a, b]
    assert all(m["type"] == P.RESULT for m in finals)


def test_bad_jobs_get_errors_and_the_worker_keeps_serving(client, trained, tmp_path):
    result, _, _ = trained
    pid = client.pid
    V, F = sphere()
    Vnan = V.copy()
    Vnan[5, 1] = np.nan
    tampered = tmp_path / "tampered.lipsdf"
    data = bytearray(Path(result["files"]["field"]).read_bytes())
    # A byte inside the first array's data (W, from byte ~163 on). The file's middle byte can
    # land in a zip local header field that zipfile never reads, and the file then loads.
    data[300] ^= 0xFF
    tampered.write_bytes(bytes(data))
    cases = [
        (
            "train",
            TRAIN,
            {"vertices": np.zeros((0, 3)), "faces": np.zeros((0, 3), int)},
            P.BAD_INPUT,
            "no vertices",
        ),
        ("train", TRAIN, {"vertices": Vnan, "faces": F}, P.BAD_INPUT, "NaN"),
        (
            "train",
            dict(TRAIN, overrides={"depht": 3}),
            {"vertices": V, "faces": F},
            P.BAD_INPUT,
            "depht",
        ),
        ("extract", {"field": str(tmp_path / "missing.lipsdf")}, None, P.FIELD_FILE, "not found"),
        ("offset", {"field": str(tampered), "distances": [0.1]}, None, P.FIELD_FILE, ""),
    ]
    for i, (kind, params, arrays, err_kind, text) in enumerate(cases):
        with pytest.raises(WorkerError) as err:
            client.run(kind, params, tmp_path / str(i), arrays=arrays, timeout=30)
        assert err.value.kind == err_kind, err.value
        assert text in str(err.value)
        assert "Traceback" in err.value.traceback
    # Requests the client would never send still get an answer.
    client._write({"id": "raw1", "type": "train", "params": "not a dict"})
    client._write({"id": "raw2", "type": "frobnicate", "params": {}})
    for job in ("raw1", "raw2"):
        with pytest.raises(WorkerError) as err:
            client.wait(job, timeout=10)
        assert err.value.kind == P.BAD_INPUT
    assert client.pid == pid
    ok = client.run("extract", {"field": result["files"]["field"], "resolution": 16}, tmp_path)
    assert ok["type"] == P.RESULT


def test_kill_9_mid_job_is_reported_and_the_next_job_gets_a_fresh_worker(tmp_path):
    V, F = sphere()
    with WorkerClient(env=ENV) as c:
        c.start()
        first = c.pid
        job = c.submit("train", LONG, tmp_path / "a", arrays={"vertices": V, "faces": F})
        wait_for(c, job, "train")
        os.kill(first, signal.SIGKILL)
        with pytest.raises(WorkerCrashedError) as err:
            c.wait(job, timeout=10)
        assert "SIGKILL" in str(err.value)
        assert f"job {job}: train" in str(err.value)  # the tail of the worker's stderr
        r = c.run("train", TRAIN, tmp_path / "b", arrays={"vertices": V, "faces": F}, timeout=60)
        assert r["type"] == P.RESULT and c.pid != first


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has exited; only its entry waits to be reaped


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_worker_exits_when_its_parent_dies():
    parent = textwrap.dedent(
        """
        import sys, time
        from lipsdf_blender.worker.client import WorkerClient
        c = WorkerClient(env={"LIPSDF_WORKER_THREADS": "1"})
        c.start()
        print(c.pid, flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", parent],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        pid = int(proc.stdout.readline())
        assert not _gone(pid)
        proc.kill()
        proc.wait()
        t0 = time.monotonic()
        while not _gone(pid) and time.monotonic() - t0 < 5.0:
            time.sleep(0.05)
        assert _gone(pid), "the worker outlived its parent by 5 s"
    finally:
        proc.kill()


def test_out_of_memory_halves_the_batch_then_gives_up_clearly(tmp_path):
    V, F = sphere()
    # The hook makes the next 3 attempts fail as CUDA out-of-memory would. On the CPU there is
    # no further fall-back, so job 1 (two attempts) fails and job 2 succeeds at half batch.
    with WorkerClient(env=dict(ENV, LIPSDF_WORKER_FAKE_OOM="3")) as c:
        logs = []
        with pytest.raises(WorkerError) as err:
            c.run(
                "train",
                TRAIN,
                tmp_path / "a",
                arrays={"vertices": V, "faces": F},
                on_progress=logs.append,
                timeout=60,
            )
        assert err.value.kind == P.OUT_OF_MEMORY and "smaller preset" in str(err.value)
        logs = []
        r = c.run(
            "train",
            TRAIN,
            tmp_path / "b",
            arrays={"vertices": V, "faces": F},
            on_progress=logs.append,
            timeout=60,
        )
        assert r["type"] == P.RESULT
        assert any(m["type"] == P.LOG and "half the batch" in m["message"] for m in logs)
        batch = Field.load(r["files"]["field"]).record["settings"]["batch_size"]
        assert batch == OVERRIDES["batch_size"] // 2

        # Shutting down cancels the running job and does not start the queued one.
        a = c.submit("train", LONG, tmp_path / "c", arrays={"vertices": V, "faces": F})
        b = c.submit("train", TRAIN, tmp_path / "d", arrays={"vertices": V, "faces": F})
        wait_for(c, a, "train")
        c.shutdown()
        assert not c.is_alive()
        for job in (a, b):
            with pytest.raises(JobCancelledError):
                c.wait(job, timeout=5)


def test_protocol_round_trip_and_nan():
    msg = {"type": P.PROGRESS, "loss": float("nan"), "eta": float("inf"), "step": 3}
    line = P.encode(msg)
    assert line.endswith("\n") and "NaN" not in line
    assert P.decode(line) == {"type": P.PROGRESS, "loss": None, "eta": None, "step": 3}
    with pytest.raises(P.ProtocolError):
        P.decode("not json")
    with pytest.raises(P.ProtocolError):
        P.decode("[1, 2]")


def test_worker_runs_from_a_blender_extension_layout(tmp_path):
    # Blender imports an extension as bl_ext.<repo>.lipsdf_blender; the client must still
    # start its worker as <package>.worker from the folder that holds the package.
    repo = tmp_path / "bl_ext" / "user_default"
    shutil.copytree(
        ROOT / "lipsdf_blender",
        repo / "lipsdf_blender",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    code = textwrap.dedent(
        """
        import sys
        from bl_ext.user_default.lipsdf_blender.worker.client import WorkerClient
        assert "torch" not in sys.modules and "bpy" not in sys.modules
        with WorkerClient(env={"LIPSDF_WORKER_THREADS": "1"}) as c:
            print(c.start()["protocol"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(P.PROTOCOL_VERSION)


def test_a_python_without_torch_fails_to_start_with_its_reason(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    c = WorkerClient(python=str(tmp_path / "v" / "bin" / "python"), startup_timeout=60)
    with pytest.raises(WorkerCrashedError) as err:
        c.start()
    assert "No module named" in str(err.value)
    # A job submitted to it becomes an error too, not a hang.
    job = c.submit("extract", {"field": "x.lipsdf"}, tmp_path)
    with pytest.raises(WorkerCrashedError):
        c.wait(job, timeout=30)


def test_out_of_memory_on_a_gpu_falls_back_to_the_cpu(monkeypatch):
    # No GPU needed: the device choice is faked, the fall-back logic is the real one.
    import io

    from lipsdf_blender.worker import running, server

    def fake_pick(name="auto"):
        return torch.device("cuda" if name == "cuda" else "cpu")

    monkeypatch.setattr(running, "pick_device", fake_pick)
    monkeypatch.delenv("LIPSDF_WORKER_FAKE_OOM", raising=False)
    out = io.StringIO()
    srv = server.Server(io.BytesIO(), out, parent_pid=os.getppid())
    job = srv.make_job({"id": "7", "type": "train", "params": {}})
    calls = []

    def attempt(scale, dev):
        calls.append((scale, dev))
        if dev != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
        return "done"

    assert running.with_fallbacks(job, attempt, "cuda") == "done"
    assert calls == [(1.0, "cuda"), (0.5, "cuda"), (0.5, "cpu")]
    logs = [P.decode(line) for line in out.getvalue().splitlines()]
    assert [m["type"] for m in logs] == [P.LOG, P.LOG]
    assert "half the batch" in logs[0]["message"] and "CPU" in logs[1]["message"]


def test_a_cloud_is_trained_with_its_normals_choice_and_bad_choices_are_refused(client, tmp_path):
    P_, N = sphere_cloud(800)
    cloud = {"vertices": P_, "normals": N}
    params = dict(TRAIN, kind="points")
    infos = {}
    for i, extra in enumerate(({}, {"normals": "estimate", "noise": 0.004})):
        result = client.run("train", dict(params, **extra), tmp_path / f"ok{i}", arrays=cloud)
        infos[i] = result["info"]
        record = Field.load(result["files"]["field"]).record
        assert record["cloud"]["points"] == 800 and infos[i]["cloud"] == record["cloud"]
    assert infos[0]["cloud"]["normals"] == "input"
    assert infos[0]["summary"].startswith("normals: the input's for 800 points, ")
    assert "(auto)" in infos[0]["summary"] and "labelling" in infos[0]["summary"]
    assert infos[1]["cloud"]["normals"] == "estimated"
    assert "noise 0.004 (given)" in infos[1]["summary"]
    assert infos[0]["seconds_labelling"] > 0
    for i, (extra, text) in enumerate(
        (
            ({"normals": "flip"}, "normals must be one of auto, estimate"),
            ({"normals": None}, "normals must be one of"),
            ({"noise": -0.01}, "noise must be a distance >= 0"),
            ({"noise": "high"}, "noise must be a distance >= 0"),
            ({"noise": True}, "noise must be a distance >= 0"),
        )
    ):
        t0 = time.monotonic()
        with pytest.raises(WorkerError) as err:
            client.run("train", dict(params, **extra), tmp_path / f"bad{i}", arrays=cloud)
        assert err.value.kind == P.BAD_INPUT and text in str(err.value), extra
        assert time.monotonic() - t0 < 5.0  # refused before any labelling or training
