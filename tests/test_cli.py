"""The command line, driven as a user would: real files, real subprocesses, exit codes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lipsdf_blender.core import metrics, primitives
from lipsdf_blender.core.io import load_geometry, save_mesh

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, check=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(
        [sys.executable, "-m", "lipsdf_blender", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    V, F = primitives.icosphere(1.0, 3)
    save_mesh(d / "ball.obj", V, F)
    cli(
        "train",
        d / "ball.obj",
        "-o",
        d / "ball.lipsdf",
        "--preset",
        "fast",
        "--steps",
        "600",
        "--device",
        "cpu",
    )
    return d


def test_train_info_remesh_offset_csg(trained):
    d = trained
    info = cli("info", d / "ball.lipsdf").stdout
    assert "8 SLL layers x 64" in info and "fast" in info

    out = cli(
        "remesh", "unused", "--field", d / "ball.lipsdf", "-o", d / "r.obj", "--resolution", "64"
    )
    assert "network evaluations" in out.stdout
    g = load_geometry(d / "r.obj")
    assert metrics.is_watertight(g.faces)
    assert np.abs(np.linalg.norm(g.vertices, axis=1) - 1).max() < 0.05

    cli(
        "offset",
        d / "ball.lipsdf",
        "-o",
        d / "o.obj",
        "--distance",
        "0.1",
        "--distance",
        "-0.2",
        "--resolution",
        "64",
    )
    text = (d / "o.obj").read_text()
    assert "o offset+0.1" in text and "o offset-0.2" in text

    cli(
        "csg",
        "union",
        d / "ball.lipsdf",
        d / "ball.lipsdf",
        "-o",
        d / "u.ply",
        "--blend",
        "0.05",
        "--resolution",
        "48",
    )
    assert metrics.is_watertight(load_geometry(d / "u.ply").faces)


def test_user_errors_are_one_line_and_nonzero(trained, tmp_path):
    p = cli("remesh", tmp_path / "missing.obj", "-o", tmp_path / "x.obj", check=False)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "Traceback" not in p.stderr

    bad = tmp_path / "bad.lipsdf"
    data = bytearray((trained / "ball.lipsdf").read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    p = cli("info", bad, check=False)
    assert p.returncode == 2 and "lipsdf: error:" in p.stderr
    assert "Traceback" not in p.stderr

    nan = tmp_path / "nan.obj"
    nan.write_text("v 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n")
    p = cli("train", nan, "-o", tmp_path / "n.lipsdf", check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
