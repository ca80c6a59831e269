"""Training samples: balanced labels, right signs, configurable counts, reproducible."""

import numpy as np

from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.training.presets import SampleConfig
from lipsdf_blender.core.training.sampling import make_samples, normalization
from lipsdf_blender.core.training.train import train_field


def normalised(geom):
    c, s = normalization(geom)
    return Geometry(geom.kind, (geom.vertices - c) * s, geom.faces, geom.normals, geom.edges)


def test_signed_samples_are_balanced_labelled_and_reproducible():
    # A thin box: uniform samples alone would be ~3 % inside.
    V, F = primitives.box_mesh(half_size=(1.0, 0.5, 0.05))
    g = normalised(Geometry.mesh(V, F))
    cfg = SampleConfig(n_uniform=20_000, n_surface=30_000)
    a = make_samples(g, "signed", cfg, seed=3)
    n_in, n_out = (a.labels < 0).sum(), (a.labels > 0).sum()
    assert abs(n_in - n_out) <= 0.05 * len(a.labels)
    # Labels agree with the box (normalised half sizes 1, 0.5, 0.05).
    inside = np.all(np.abs(a.points) < [1.0, 0.5, 0.05], axis=1)
    clear = np.min(np.abs(np.abs(a.points) - [1.0, 0.5, 0.05]), axis=1) > 1e-3
    assert np.all((a.labels[clear] < 0) == inside[clear])
    b = make_samples(g, "signed", cfg, seed=3)
    np.testing.assert_array_equal(a.points, b.points)
    c = make_samples(g, "signed", cfg, seed=4)
    assert not np.array_equal(a.points, c.points)
    # Balancing tops the rare class up with extra box points; it never starves the pool.
    assert len(a.labels) >= 0.5 * (cfg.n_uniform + cfg.n_surface)
    # A fat shape needs no top-up: the counts are exactly as configured.
    Vs, Fs = primitives.icosphere(1.0, 3)
    s = make_samples(normalised(Geometry.mesh(Vs, Fs)), "signed", cfg, seed=0)
    assert len(s.labels) >= cfg.n_uniform + cfg.n_surface - 3


def test_unsigned_samples_on_a_curve():
    V, E = primitives.curve_circle(32, 1.0)
    g = normalised(Geometry.curve(V, E))
    s = make_samples(g, "unsigned", SampleConfig(n_uniform=5000, n_surface=9000), thickness=0.02)
    on = s.points[s.labels < 0]
    r = np.linalg.norm(on[:, :2], axis=1)
    assert np.abs(r - 1).max() < 0.01 and np.abs(on[:, 2]).max() < 1e-9
    off = s.points[s.labels > 0]
    tube = np.hypot(np.linalg.norm(off[:, :2], axis=1) - 1, off[:, 2])
    assert tube.min() > 0.015  # nothing labelled "off the curve" right on it


def test_progress_reports_steps_in_order():
    V, F = primitives.icosphere(1.0, 2)
    seen = []
    train_field(
        Geometry.mesh(V, F),
        "fast",
        device="cpu",
        steps=60,
        batch_size=256,
        samples=SampleConfig(n_uniform=2000, n_surface=4000),
        progress=seen.append,
    )
    steps = [p.step for p in seen if p.phase == "train"]
    assert steps == sorted(steps) and steps[-1] == 60
    last = seen[-1]
    assert last.total == 60 and last.elapsed > 0 and np.isfinite(last.loss)
    assert seen[0].phase == "label"
