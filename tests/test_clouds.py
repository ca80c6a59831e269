"""Point clouds that break naive normals: noise, thin gaps, missing parts and stray points.

Each test trains a small field (conftest.TINY) from a cloud made in code and checks the
remeshed surface's geometry: components, genus, closedness, distances to the true shape.
The full presets on real scans are measured by benchmarks/bench_clouds.py.
"""

import numpy as np
import pytest
from conftest import TINY

from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.cloud import apss_distance, estimate_noise, prepare_cloud
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.surfaces import metrics, topology
from lipsdf_blender.core.surfaces.remesh import remesh
from lipsdf_blender.core.training.train import train_field


def sphere_points(n, seed=0):
    P = np.random.default_rng(seed).normal(size=(n, 3))
    return P / np.linalg.norm(P, axis=1, keepdims=True)


def torus_inside(Q, R=1.0, r=0.35):
    return np.hypot(np.linalg.norm(Q[:, :2], axis=1) - R, Q[:, 2]) < r


def diagonal(P):
    return float(np.linalg.norm(P.max(0) - P.min(0)))


def cloud_surface(P, seed=0, resolution=96, **kw):
    field = train_field(Geometry.points(P), "fast", device="cpu", seed=seed, **dict(TINY, **kw))
    r = remesh(field, resolution)
    return field, r.vertices, r.faces


def test_noise_estimate_tells_noise_from_curvature():
    P = primitives.torus_points(20000, R=1.0, r=0.35, seed=1)
    sigma = 0.01 * diagonal(P)
    noisy = P + np.random.default_rng(2).normal(size=P.shape) * sigma
    est, spacing = estimate_noise(noisy)
    assert 0.8 * sigma < est < 1.2 * sigma
    clean, _ = estimate_noise(P)
    assert clean < 0.25 * spacing


def test_noisy_torus_is_one_genus_one_part():
    P = primitives.torus_points(20000, R=1.0, r=0.35, seed=0)
    sigma = 0.01 * diagonal(P)
    P = P + np.random.default_rng(1).normal(size=P.shape) * sigma
    field, V, F = cloud_surface(P)
    cloud = field.record["cloud"]
    assert cloud["normals"] == "estimated" and cloud["used"] < cloud["points"]
    assert 0.8 * sigma < cloud["noise"] < 1.2 * sigma
    assert topology.is_watertight(F)
    assert topology.connected_components(F) == 1
    assert topology.genus(V, F) == 1
    Q = np.random.default_rng(2).uniform(-1.5, 1.5, size=(200_000, 3))
    Q[:, 2] *= 0.4
    iou = metrics.volume_iou(torus_inside(Q), metrics.winding_inside(V, F, Q))
    assert iou >= 0.95, iou


def test_two_thin_parallel_plates_stay_apart():
    # two closed plates 0.06 thick, 0.08 apart
    parts = [
        primitives.box_mesh(half_size=(1.0, 1.0, 0.03), center=(0, 0, z)) for z in (-0.07, 0.07)
    ]
    P = np.vstack(
        [metrics.sample_surface(V, F, 15000, seed=i)[0] for i, (V, F) in enumerate(parts)]
    )
    _, V, F = cloud_surface(P, resolution=128)
    assert topology.is_watertight(F)
    assert topology.connected_components(F) == 2
    # the gap between them is outside, the plates inside
    probe = np.array([[0.0, 0.0, 0.0], [0.5, -0.3, 0.0], [0.0, 0.0, 0.07], [0.4, 0.4, -0.07]])
    assert metrics.winding_inside(V, F, probe).tolist() == [False, False, True, True]


def test_sphere_missing_its_bottom_third_comes_out_closed_and_round():
    P = sphere_points(20000)
    P = P[P[:, 2] > -1.0 / 3.0]
    # Wider and longer than TINY (as the sphere fixture is): within 3 % of the radius.
    _, V, F = cloud_surface(P, width=48, steps=1500)
    assert topology.is_watertight(F)
    assert topology.connected_components(F) == 1
    assert topology.signed_volume(V, F) > 0
    radius = np.linalg.norm(V, axis=1)
    assert np.abs(radius - 1.0).max() <= 0.03, np.abs(radius - 1.0).max()


@pytest.mark.parametrize("share", [0.05])
def test_stray_points_add_no_blobs(share):
    rng = np.random.default_rng(3)
    P = sphere_points(20000, seed=4)
    stray = rng.uniform(-1.3, 1.3, size=(int(share * len(P)), 3))
    c = prepare_cloud(np.vstack([P, stray]))
    assert 0.85 * len(stray) <= c.report["outliers"] <= 1.01 * len(stray)
    field, V, F = cloud_surface(np.vstack([P, stray]))
    assert topology.is_watertight(F)
    assert topology.connected_components(F) == 1
    assert np.abs(np.linalg.norm(V, axis=1) - 1.0).max() < 0.03


def test_given_normals_are_used_and_an_inside_out_part_is_flipped():
    P = sphere_points(4000)
    c = prepare_cloud(P, -P)  # every normal inward
    assert c.report["normals"] == "input" and c.report["flipped"] == len(P)
    assert (np.einsum("ij,ij->i", c.normals, P) > 0).all()
    e = prepare_cloud(P, -P, normals="estimate")
    assert e.report["normals"] == "estimated" and (np.einsum("ij,ij->i", e.normals, P) > 0).all()


def test_fitted_sphere_continues_a_sphere_across_its_missing_cap():
    P = sphere_points(6000, seed=5)
    P = P[P[:, 2] > 0.0]  # the upper half only
    Q = np.array([[0.0, 0.0, -0.9], [0.0, 0.0, -1.1], [0.6, 0.0, -0.6], [0.8, 0.1, -0.7]])
    g = apss_distance(P, P, Q)
    np.testing.assert_allclose(g, np.linalg.norm(Q, axis=1) - 1.0, atol=0.03)


def test_scan_normals_are_averaged_with_the_noise_and_stay_outward():
    rng = np.random.default_rng(6)
    P = sphere_points(30000, seed=6)
    N = P + rng.normal(size=P.shape) * 0.1  # a scanner's rough normals
    noisy = P + rng.normal(size=P.shape) * 0.01 * diagonal(P)
    c = prepare_cloud(noisy, N)
    assert c.report["normals"] == "input" and c.report["used"] < len(P)
    radial = np.einsum("ij,ij->i", c.normals, c.points / np.linalg.norm(c.points, axis=1)[:, None])
    assert (radial > 0.9).mean() > 0.99
    # averaged and projected: much closer to the sphere than the noise
    err = np.abs(np.linalg.norm(c.points, axis=1) - 1.0)
    assert np.sqrt((err**2).mean()) < 0.5 * 0.01 * diagonal(P)
