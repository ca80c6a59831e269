"""The command line, driven as a user would: real files, real subprocesses, exit codes."""

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import sphere_cloud, write_scan_ply

from lipsdf_blender.core.formats.files import load_geometry, save_mesh
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.surfaces import topology

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
    assert "field evaluations" in out.stdout
    assert re.search(r"; detail \d+ %, field \d+ %", out.stdout), out.stdout
    g = load_geometry(d / "r.obj")
    assert topology.is_watertight(g.faces)
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
    assert topology.is_watertight(load_geometry(d / "u.ply").faces)


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


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A scanner's PLY: an ellipsoid's points with outward normals, colours and quality."""
    d = tmp_path_factory.mktemp("scan")
    P, N = sphere_cloud(2000, radius=1.0, axes=(1.0, 0.6, 0.4))
    write_scan_ply(d / "scan.ply", P, N)
    return d


FAST = ("--preset", "fast", "--steps", "150", "--device", "cpu")


def test_a_cloud_says_what_was_done_to_its_normals_and_the_dense_grid_is_named(scan):
    d = scan
    out = cli(
        "remesh",
        d / "scan.ply",
        "-o",
        d / "r.obj",
        "--resolution",
        "48",
        *FAST,
        "--save-field",
        d / "scan.lipsdf",
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("normals:"))
    assert line.startswith("normals: the input's for 2,000 points, ")
    assert "flipped by the orientation check" in line and "outliers dropped" in line
    assert re.search(r"; noise [0-9.e-]+ \(auto\); labelling [0-9.]+ s$", line), line
    # The grid has 48 cells along the box's longest side only: name its real shape.
    m = re.search(r"= [0-9.]+% of the (\d+) corners of a dense (\d+) x (\d+) x (\d+) grid", out)
    assert m and "^3" not in out, out
    corners, n = int(m.group(1)), [int(g) for g in m.groups()[1:]]
    assert n[0] == max(n) == 48 and n[2] < n[1] < 48
    assert corners == np.prod(np.array(n) + 1)
    assert topology.is_watertight(load_geometry(d / "r.obj").faces)
    info = cli("info", d / "scan.lipsdf").stdout
    assert "cloud: normals: the input's for 2,000 points" in info and "labelling" in info

    out = cli(
        "train",
        d / "scan.ply",
        "-o",
        d / "e.lipsdf",
        *FAST,
        "--normals",
        "estimate",
        "--noise",
        "0.002",
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("normals:"))
    assert line.startswith("normals: estimated for 2,000 points, ")
    assert "; noise 0.002 (given);" in line


def test_meshes_print_no_cloud_line_and_bad_cloud_options_are_refused(trained, tmp_path):
    info = cli("info", trained / "ball.lipsdf").stdout
    assert "cloud" not in info and "normals" not in info
    for args, text in (
        (("--noise", "-0.1"), "not a noise level"),
        (("--noise", "nan"), "not a noise level"),
        (("--normals", "flip"), "invalid choice"),
    ):
        p = cli("train", trained / "ball.obj", "-o", tmp_path / "x.lipsdf", *args, check=False)
        assert p.returncode == 2 and text in p.stderr and "Traceback" not in p.stderr, args


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_the_progress_bar_shows_no_eta_until_the_step_rate_is_known():
    from lipsdf_blender.cli.progress import ProgressBar
    from lipsdf_blender.core.training.train import _Reporter

    term, clock = _Terminal(), [0.0]
    r = _Reporter(ProgressBar(term), 3000, "CPU", interval=0.0, clock=lambda: clock[0])
    for step in range(1, 3001, 15):  # the first step took 4 s, then 12 ms a step: 40 s
        clock[0] = 4.0 + 0.012 * (step - 1)
        r(step, 0.1)
    lines = [x for x in term.getvalue().split("\r\033[K") if x]
    assert lines[0].startswith("train [") and "ETA" not in lines[0]
    etas = [float(x) for x in re.findall(r"ETA +([0-9.]+)s", term.getvalue())]
    assert len(etas) > 150 and max(etas) <= 0.012 * 3000


def test_input_formats_are_listed_and_a_broken_scene_is_one_line(tmp_path):
    from lipsdf_blender.cli.parser import INPUT_FORMATS
    from lipsdf_blender.core.formats.files import READ_EXTENSIONS

    # the help names every extension the reader takes
    assert set(re.findall(r"\.\w+", INPUT_FORMATS)) == set(READ_EXTENSIONS)
    for cmd in ("train", "remesh"):
        assert ".glb" in cli(cmd, "--help").stdout
    (tmp_path / "cut.glb").write_bytes(b"glTF\x02\x00\x00\x00\xff\xff\x00\x00")
    p = cli("train", tmp_path / "cut.glb", "-o", tmp_path / "x.lipsdf", check=False)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().count("\n") == 0 and "'cut.glb'" in p.stderr, p.stderr
