"""A closed mesh's remesh needs no training: the exact field, and early = final."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from lipsdf_blender.core.fields.detail import (
    DetailField,
    ExactField,
    InputSurface,
    exact_field,
    surface_field,
)
from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.formats.files import load_geometry, save_mesh
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.surfaces import topology
from lipsdf_blender.core.surfaces.remesh import remesh
from lipsdf_blender.core.training.train import train_field

ROOT = Path(__file__).resolve().parents[1]


def _quick_train(V, F, seed=0):
    from lipsdf_blender.core.training.presets import SampleConfig

    cfg = SampleConfig(n_uniform=4000, n_surface=8000)
    return train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=seed, steps=150, samples=cfg)


def test_closed_is_decided_by_the_edges():
    V, F = primitives.box_mesh(0.5)
    assert InputSurface(V, F).closed
    assert not InputSurface(V, F[1:]).closed  # a hole
    flipped = F.copy()
    flipped[0] = flipped[0, ::-1]
    assert not InputSurface(V, flipped).closed  # one face turned over
    # unwelded corners (a file that splits vertices at seams) are still closed
    Vs, Fs = V[F].reshape(-1, 3), np.arange(3 * len(F)).reshape(-1, 3)
    assert InputSurface(Vs, Fs).closed
    # two overlapping closed boxes: the winding number is 2 in the overlap, still sure
    V2, F2 = primitives.box_mesh(0.5, center=(0.3, 0.0, 0.0))
    assert InputSurface(np.concatenate([V, V2]), np.concatenate([F, F2 + len(V)])).closed
    assert exact_field(Geometry.mesh(V, F[1:])) is None


def test_exact_field_is_the_signed_distance():
    V, F = primitives.icosphere(1.0, 4)
    ef = exact_field(Geometry.mesh(V, F))
    P = np.random.default_rng(0).uniform(-2, 2, (2000, 3))
    h = ef(torch.from_numpy(P)).numpy()
    r = np.linalg.norm(P, axis=1)
    # the icosphere lies within 1 % inside the unit sphere
    assert np.abs(h - (r - 1.0)).max() < 0.01
    assert np.all(np.sign(h[np.abs(r - 1) > 0.02]) == np.sign(r - 1)[np.abs(r - 1) > 0.02])


def test_early_remesh_equals_the_final_one():
    """Remeshed before training (no field) and after (the trained field): the same mesh, and
    the same as the detail field of an open-box-free mesh gives near the input."""
    V, F = primitives.torus_mesh()
    early = remesh(exact_field(Geometry.mesh(V, F)), 64)
    field = _quick_train(V, F)
    assert isinstance(surface_field(field), ExactField)
    final = remesh(field, 64)
    assert np.array_equal(early.vertices, final.vertices)
    assert np.array_equal(early.faces, final.faces)
    assert topology.is_watertight(final.faces) and topology.connected_components(final.faces) == 1
    assert final.detail_share == 1.0
    # the detail field (network beyond the band) gives the same surface to rounding
    from lipsdf_blender.core.fields.detail import BAND
    from lipsdf_blender.core.surfaces.extract import cell_size, extract

    band = max(BAND * field.surface.diagonal(), 2.5 * cell_size(field, 64))
    d = extract(DetailField(field, field.surface, band), 0.0, resolution=64, sharp=True)
    assert len(d.faces) == len(final.faces)
    assert np.abs(np.sort(d.vertices, axis=0) - np.sort(final.vertices, axis=0)).max() < 1e-6


def test_cli_writes_a_closed_remesh_first_and_trains_the_same_field(tmp_path):
    V, F = primitives.box_mesh(0.5)
    src = tmp_path / "box.obj"
    save_mesh(src, V, F)
    env = dict(os.environ, PYTHONPATH=str(ROOT), LIPSDF_FAIR_SHARE="0")

    def cli(*args):
        p = subprocess.run(
            [sys.executable, "-m", "lipsdf_blender", *map(str, args)],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
        assert p.returncode == 0, p.stderr
        return p.stdout

    out = cli(
        "remesh", src, "-o", tmp_path / "r.obj", "--resolution", "48", "--steps", "100",
        "--save-field", tmp_path / "after.lipsdf", "--timings", tmp_path / "t.json",
    )  # fmt: skip
    # written before any training, which came after it
    assert "closed input" in out and out.index("r.obj") < out.index("after.lipsdf")
    r = load_geometry(tmp_path / "r.obj")
    assert topology.is_watertight(r.faces)
    # the box's faces are flat and its corners sharp
    assert np.abs(np.abs(r.vertices).max(axis=1) - 0.5).max() < 3e-3  # an eighth of a cell
    cli("train", src, "-o", tmp_path / "before.lipsdf", "--steps", "100")
    a, b = Field.load(tmp_path / "after.lipsdf"), Field.load(tmp_path / "before.lipsdf")
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(pa, pb)
    import json

    seconds = json.loads((tmp_path / "t.json").read_text())
    assert {"read", "extract", "write", "train"} <= set(seconds)
