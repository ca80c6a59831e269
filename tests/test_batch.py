"""Batches: inputs, local worker processes, the table, retries, resuming, and Ray.

Shapes are small (a ball, a box, a ring, a broken file) and trainings tiny; every check
reads the written meshes and fields back and measures them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsdf_blender.batch.shape import Settings, file_hash, folder_name
from lipsdf_blender.batch.tasks import expand_inputs
from lipsdf_blender.core.errors import BadInputError
from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.formats.files import load_geometry, save_mesh
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.surfaces.topology import is_watertight, signed_volume

ROOT = Path(__file__).resolve().parents[1]
RADIUS, HALF = 0.7, 0.5
FAST = ["--steps", "150", "--resolution", "40", "--quiet"]
BATCH_ENV = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "LIPSDF_FAIR_SHARE": "0"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    V, F = primitives.icosphere(subdivisions=3)
    save_mesh(d / "ball.obj", V * RADIUS, F)
    V, F = primitives.box_mesh(HALF)
    save_mesh(d / "box.ply", V, F)
    (d / "sub").mkdir()
    V, F = primitives.torus_mesh()
    save_mesh(d / "sub" / "ring.stl", V, F)
    (d / "broken.obj").write_text("v 0 0 0\nf 1 2 3\n")
    (d / "notes.md").write_text("not a shape")
    return d


def batch(*args, env=None, check_rc=None, timeout=300):
    cmd = [sys.executable, "-m", "lipsdf_blender", "batch", *map(str, args)]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, **BATCH_ENV, **(env or {})),
    )  # fmt: skip
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr[-3000:]
    return proc


def table(out: Path) -> dict:
    doc = json.loads((out / "results.json").read_text())
    return {Path(r["input"]).name: r for r in doc["rows"]} | {"_doc": doc}


def radii(V) -> np.ndarray:
    return np.linalg.norm(np.asarray(V), axis=1)


# -- inputs -------------------------------------------------------------------------------------
def test_inputs_from_files_folders_and_globs(inputs, tmp_path):
    out = tmp_path / "out"
    found = expand_inputs([inputs], out)
    assert sorted(p.name for p in found) == ["ball.obj", "box.ply", "broken.obj", "ring.stl"]
    found = expand_inputs([str(inputs / "**" / "*.stl"), inputs / "ball.obj"], out)
    assert [p.name for p in found] == ["ring.stl", "ball.obj"]
    # the same file twice counts once; a named file of any ending is taken
    found = expand_inputs([inputs / "ball.obj", inputs / "ball.obj", inputs / "notes.md"], out)
    assert [p.name for p in found] == ["ball.obj", "notes.md"]
    # outputs inside an input folder are never inputs
    lib = tmp_path / "lib"
    (lib / "results").mkdir(parents=True)
    save_mesh(lib / "ball.obj", *primitives.box_mesh(0.1))
    save_mesh(lib / "results" / "ball.remesh.obj", *primitives.box_mesh(0.1))
    assert [p.name for p in expand_inputs([lib], lib / "results")] == ["ball.obj"]
    (tmp_path / "out").mkdir()
    for bad, words in (
        ([tmp_path / "missing.obj"], "not a file"),
        ([str(tmp_path / "*.obj")], "no input file matches"),
        ([tmp_path / "out"], "no input files"),
    ):
        with pytest.raises(BadInputError, match=words):
            expand_inputs(bad, tmp_path / "elsewhere")


def test_settings_key_and_folder_names(tmp_path):
    a = Settings(offsets=(0.05,))
    assert a.key() == Settings(offsets=[0.05], threads=4, device="cpu").key()
    assert a.key() != Settings(offsets=(0.06,)).key()
    assert a.key() != Settings(offsets=(0.05,), steps=10).key()
    with pytest.raises(BadInputError, match="format"):
        Settings(format="fbx")
    with pytest.raises(BadInputError, match="other than 0"):
        Settings(offsets=(0.0,))
    p = tmp_path / "a chair?.obj"
    p.write_bytes(b"v 0 0 0\n")
    assert folder_name(p, file_hash(p)) == "a_chair_-" + file_hash(p)[:10]


# -- local workers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    t = time.perf_counter()
    proc = batch(inputs, "--out", out, "--offset", "0.05", "--offset", "-0.05", "--jobs", "2",
                 *FAST, check_rc=1)  # fmt: skip
    return out, proc, time.perf_counter() - t


def test_local_batch_writes_true_surfaces(local_run, inputs):
    out, proc, _ = local_run
    rows = table(out)
    assert rows["_doc"]["summary"]["shapes"] == 4
    assert rows["_doc"]["summary"]["ok"] == 3 and rows["_doc"]["summary"]["failed"] == 1
    assert "3 of 4 shapes ok" in proc.stdout
    for name in ("ball.obj", "box.ply", "ring.stl"):
        r = rows[name]
        assert r["status"] == "ok" and r["attempts"] == 1 and not r["skipped"]
        assert r["hash"] == file_hash(Path(r["input"]))
        folder = out / r["folder"]
        stem = Path(name).stem
        assert sorted(r["outputs"]) == sorted(
            [f"{stem}.remesh.obj", f"{stem}.offset+0.05.obj", f"{stem}.offset-0.05.obj",
             f"{stem}.lipsdf"]
        )  # fmt: skip
        g = load_geometry(folder / f"{stem}.remesh.obj")
        assert len(g.faces) == r["faces"] and is_watertight(g.faces) and r["watertight"]
        assert signed_volume(g.vertices, g.faces) == pytest.approx(r["volume"], rel=1e-6)
        assert r["components"] == 1
        for k in ("seconds_read", "seconds_train", "seconds_remesh", "seconds_offset"):
            assert r[k] is not None and r[k] >= 0
        assert r["device"].startswith("CPU")
    # the ball: the remesh on the sphere, the offsets 0.05 out and in, the field signed
    folder = out / rows["ball.obj"]["folder"]
    ball = load_geometry(folder / "ball.remesh.obj")
    assert np.abs(radii(ball.vertices) - RADIUS).max() < 0.02
    for d in (0.05, -0.05):
        shell = load_geometry(folder / f"ball.offset{d:+g}.obj")
        assert np.median(radii(shell.vertices)) == pytest.approx(RADIUS + d, abs=0.01)
    f = Field.load(folder / "ball.lipsdf")
    v = f(torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 1.2]])).numpy()
    assert v[0] < 0 < v[1]  # inside, outside (a tiny training: signs, not distances)
    box = rows["box.ply"]
    assert box["volume"] == pytest.approx((2 * HALF) ** 3, rel=0.02)
    ring = rows["ring.stl"]
    assert ring["volume"] == pytest.approx(2 * np.pi**2 * 1.0 * 0.25**2, rel=0.05)
    # the broken file: recorded, tried twice, the batch went on
    bad = rows["broken.obj"]
    assert bad["status"] == "failed" and bad["attempts"] == 2
    assert "past the last vertex" in bad["error"] and "past the last vertex" in bad["first_error"]
    assert not (out / bad["folder"] / "result.json").exists()
    # the CSV says the same
    import csv

    with open(out / "results.csv") as fh:
        csv_rows = {Path(r["input"]).name: r for r in csv.DictReader(fh)}
    assert csv_rows["ball.obj"]["faces"] == str(rows["ball.obj"]["faces"])
    assert csv_rows["broken.obj"]["status"] == "failed"


def test_rerun_skips_finished_shapes(local_run, inputs, tmp_path):
    import shutil

    out = tmp_path / "copy"  # the first run's folder stays as it was, for the Ray test
    shutil.copytree(local_run[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.obj")}
    proc = batch(inputs, "--out", out, "--offset", "0.05", "--offset", "-0.05", *FAST,
                 check_rc=1)  # fmt: skip
    rows = table(out)
    for name in ("ball.obj", "box.ply", "ring.stl"):
        assert rows[name]["status"] == "ok" and rows[name]["skipped"]
    assert rows["broken.obj"]["status"] == "failed" and not rows["broken.obj"]["skipped"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.obj")} == before
    assert "3 already done" in proc.stdout
    # other settings: the shape runs again, into the same folder (same input)
    batch(inputs / "ball.obj", "--out", out, "--offset", "0.1", *FAST, check_rc=0)
    r = table(out)["ball.obj"]
    assert not r["skipped"] and "ball.offset+0.1.obj" in r["outputs"]
    # an edited input: a new hash, a new folder
    edited = tmp_path / "edited" / "ball.obj"
    edited.parent.mkdir()
    V, F = primitives.icosphere(subdivisions=3)
    save_mesh(edited, V * 0.5, F)
    batch(edited, "--out", out, *FAST, check_rc=0)
    r = table(out)["ball.obj"]
    assert not r["skipped"] and r["hash"] == file_hash(edited)
    assert np.median(radii(load_geometry(out / r["folder"] / "ball.remesh.obj").vertices)) == (
        pytest.approx(0.5, abs=0.01)
    )


def _wait_for(find, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        p = find()
        if p is not None:
            return p
        time.sleep(0.1)
    raise AssertionError("the process to kill never appeared")


def test_local_worker_killed_mid_shape_is_retried(inputs, tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lipsdf_blender", "batch", str(inputs / "ball.obj"),
           "--out", str(out), "--steps", "300", "--resolution", "40", "--quiet"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, **BATCH_ENV),
    )  # fmt: skip

    def training_worker():
        try:
            kids = psutil.Process(proc.pid).children()
        except psutil.NoSuchProcess:
            return None
        for k in kids:
            try:
                busy = "resource_tracker" not in " ".join(k.cmdline())
                # past torch's import: it is training
                if busy and "spawn" in " ".join(k.cmdline()) and sum(k.cpu_times()[:2]) > 3:
                    return k
            except psutil.NoSuchProcess:
                continue
        return None

    victim = _wait_for(training_worker)
    victim.kill()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    r = table(out)["ball.obj"]
    assert r["status"] == "ok" and r["attempts"] == 2
    assert "died" in r["first_error"] and "crashed" in r["first_error"]
    assert r["worker"].split(":")[-1] != str(victim.pid)
    ball = load_geometry(out / r["folder"] / "ball.remesh.obj")
    assert np.abs(radii(ball.vertices) - RADIUS).max() < 0.02


# -- Ray ----------------------------------------------------------------------------------------
def test_ray_batch_equals_local_and_resumes(ray_head, local_run, inputs, tmp_path):
    out = tmp_path / "ray"
    args = [inputs, "--out", out, "--offset", "0.05", "--offset", "-0.05", *FAST]
    batch(*args, "--ray", ray_head["address"], env=ray_head["env"], check_rc=1)
    local, remote = table(local_run[0]), table(out)
    assert remote["_doc"]["runner"]["kind"] == "ray"
    assert remote["_doc"]["runner"]["cluster"]["cpus"] == 2
    for name in ("ball.obj", "box.ply", "ring.stl"):
        a, b = local[name], remote[name]
        assert b["status"] == "ok" and b["attempts"] == 1
        assert (b["hash"], b["folder"], b["faces"], b["watertight"]) == (
            a["hash"], a["folder"], a["faces"], a["watertight"]
        )  # fmt: skip
        assert b["volume"] == pytest.approx(a["volume"], rel=1e-9)
        for f in a["outputs"]:
            if f.endswith(".obj"):
                assert (out / b["folder"] / f).read_bytes() == (
                    local_run[0] / a["folder"] / f
                ).read_bytes()
    assert remote["broken.obj"]["status"] == "failed" and remote["broken.obj"]["attempts"] == 2
    # a rerun skips the finished shapes without a task; --shared-storage runs the rest
    proc = batch(*args, "--ray", ray_head["address"], "--shared-storage", env=ray_head["env"],
                 check_rc=1)  # fmt: skip
    again = table(out)
    assert all(again[n]["skipped"] for n in ("ball.obj", "box.ply", "ring.stl"))
    assert again["_doc"]["runner"]["shared_storage"] is True
    assert "3 already done" in proc.stdout


def test_ray_task_killed_mid_shape_is_retried_by_ray(ray_head, inputs, tmp_path):
    psutil = pytest.importorskip("psutil")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "lipsdf_blender", "batch", str(inputs / "ball.obj"),
           str(inputs / "box.ply"), "--out", str(out), "--steps", "400", "--resolution", "40",
           "--quiet", "--ray", ray_head["address"]]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, **BATCH_ENV, **ray_head["env"]),
    )  # fmt: skip
    seen: dict[int, float] = {}

    def running_task():
        for p in psutil.process_iter(["pid", "cmdline"]):
            title = " ".join(p.info["cmdline"] or [])
            if title.startswith("ray::lipsdf_shape"):
                seen.setdefault(p.info["pid"], time.monotonic())
                if time.monotonic() - seen[p.info["pid"]] > 2.0:
                    return p
        return None

    victim = _wait_for(running_task)
    victim.kill()
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    rows = table(out)
    for name in ("ball.obj", "box.ply"):
        # Ray ran it again (the batch's own retry was not needed)
        assert rows[name]["status"] == "ok" and rows[name]["attempts"] == 1
        assert rows[name]["worker"].split(":")[-1] != str(victim.pid)
    ball = load_geometry(out / rows["ball.obj"]["folder"] / "ball.remesh.obj")
    assert np.abs(radii(ball.vertices) - RADIUS).max() < 0.02
    assert rows["box.ply"]["volume"] == pytest.approx((2 * HALF) ** 3, rel=0.02)


def test_batch_reports_bad_arguments(inputs, tmp_path):
    proc = batch(tmp_path / "nothing-here", "--out", tmp_path / "o", check_rc=2)
    assert "not a file, a folder or a pattern" in proc.stderr
    proc = batch(inputs / "ball.obj", "--out", tmp_path / "o", "--jobs", "0", check_rc=2)
    assert "--jobs must be at least 1" in proc.stderr
    proc = batch(inputs / "ball.obj", "--out", tmp_path / "o", "--offset", "0", check_rc=2)
    assert "other than 0" in proc.stderr
    proc = batch(inputs / "ball.obj", "--out", tmp_path / "o", "--cpus-per-task", "0",
                 check_rc=2)  # fmt: skip
    assert "--cpus-per-task must be at least 1" in proc.stderr
    # a cluster address where nothing listens: said at once, nothing made
    if importlib.util.find_spec("ray") is None:
        return
    t = time.monotonic()
    proc = batch(inputs / "ball.obj", "--out", tmp_path / "o", "--ray", "ray://127.0.0.1:9",
                 check_rc=2)  # fmt: skip
    assert "cannot reach the Ray cluster at ray://127.0.0.1:9: nothing answers" in proc.stderr
    assert time.monotonic() - t < 20
    assert not (tmp_path / "o").exists()  # nothing made for a refused batch


def test_task_resources_give_gpu_tasks_their_share_of_the_cpus():
    from lipsdf_blender.worker.cluster import task_resources

    assert task_resources({"cpus": 2.0, "gpus": 0.0}) == {"num_cpus": 1}
    assert task_resources({"cpus": 64.0, "gpus": 0.0}, 4) == {"num_cpus": 4}
    # an 8-GPU node with 96 cores: 8 CPUs a GPU task (at most 8); 2 cores a GPU: 2
    assert task_resources({"cpus": 96.0, "gpus": 8.0}) == {"num_gpus": 1, "num_cpus": 8}
    assert task_resources({"cpus": 16.0, "gpus": 8.0}) == {"num_gpus": 1, "num_cpus": 2}
    assert task_resources({"cpus": 4.0, "gpus": 8.0}) == {"num_gpus": 1, "num_cpus": 1}
    assert task_resources({"cpus": 96.0, "gpus": 8.0}, 3) == {"num_gpus": 1, "num_cpus": 3}


def test_ray_not_installed_is_a_clear_error(inputs, tmp_path, monkeypatch):
    import builtins

    from lipsdf_blender.worker import cluster

    real = builtins.__import__

    def no_ray(name, *a, **kw):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    monkeypatch.setattr(cluster.importlib, "import_module", lambda n: no_ray(n))
    with pytest.raises(cluster.ClusterError, match="requirements-ray.txt"):
        cluster.connect("auto")
