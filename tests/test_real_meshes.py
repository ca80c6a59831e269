"""The fast preset on the real meshes of ../shared/meshes (slow: `make test-slow`)."""

from pathlib import Path

import igl
import numpy as np
import pytest

from lipsdf_blender.core.formats.files import load_geometry
from lipsdf_blender.core.surfaces import metrics, topology
from lipsdf_blender.core.surfaces.extract import extract
from lipsdf_blender.core.training.train import train_field

MESHES = Path(__file__).resolve().parents[2] / "shared" / "meshes"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not MESHES.is_dir(), reason="../shared/meshes is not here"),
]


def remesh(name):
    geom = load_geometry(MESHES / f"{name}.obj")
    field = train_field(geom, "fast", device="cpu", seed=0)
    out = extract(field, 0.0, resolution=192)
    return geom, out


@pytest.mark.parametrize("name", ["spot", "fandisk", "stanford-bunny"])
def test_fast_preset_quality(name):
    geom, out = remesh(name)
    V, F = geom.vertices, geom.faces
    diag = np.linalg.norm(V.max(0) - V.min(0))
    ch = metrics.chamfer_hausdorff(V, F, out.vertices, out.faces, n=50_000)
    assert topology.is_watertight(out.faces)
    assert ch["chamfer_l1"] / diag <= 0.0035
    # Input -> output: nothing of the input is missed by more than 2 % of the diagonal. (The
    # other direction also measures the caps over the bunny's holes, 3-5 % wide.)
    assert ch["a_to_b_max"] / diag <= 0.02
    assert metrics.normal_consistency(V, F, out.vertices, out.faces, n=50_000) >= 0.97
    if name == "stanford-bunny":
        lo, hi = V.min(0), V.max(0)
        Q = np.random.default_rng(0).uniform(
            lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), size=(200_000, 3)
        )
        a = igl.fast_winding_number(V, F, Q) > 0.5
        b = igl.fast_winding_number(out.vertices, out.faces, Q) > 0.5
        assert metrics.volume_iou(a, b) >= 0.97


def test_open_suzanne_becomes_one_closed_surface():
    _, out = remesh("suzanne")
    assert topology.is_watertight(out.faces)
    assert topology.signed_volume(out.vertices, out.faces) > 0


def test_deep_high_preset_network_keeps_its_slope():
    """20 layers of 128 must not collapse to a flat field (see LipschitzMLP's bias_shift)."""
    geom = load_geometry(MESHES / "spot.obj")
    field = train_field(geom, "high", device="cpu", seed=0, steps=400, batch_size=1024)
    V, F = geom.vertices, geom.faces
    lo, hi = V.min(0), V.max(0)
    P = np.random.default_rng(0).uniform(lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo), (20_000, 3))
    d = np.sqrt(igl.point_mesh_squared_distance(P, V, F)[0])
    far = d > 0.01 * np.linalg.norm(hi - lo)
    assert np.median(np.abs(field.evaluate(P[far])) / d[far]) > 0.4
