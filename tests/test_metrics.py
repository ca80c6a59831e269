"""Mesh metrics against answers known in closed form (core.surfaces.metrics)."""

from __future__ import annotations

import numpy as np
import pytest

from lipsdf_blender.core.errors import BadInputError
from lipsdf_blender.core.inputs.primitives import box_mesh, icosphere, open_monkey_like, torus_mesh
from lipsdf_blender.core.surfaces import metrics, topology


def test_chamfer_between_concentric_spheres_is_the_radius_gap():
    VA, FA = icosphere(1.0, 3)
    VB, FB = icosphere(1.01, 3)
    d = metrics.chamfer_hausdorff(VA, FA, VB, FB, n=5000)
    assert d["chamfer_l1"] == pytest.approx(0.01, abs=5e-4)
    assert d["hausdorff"] == pytest.approx(0.01, abs=5e-4)
    assert d["hausdorff"] >= d["chamfer_l1"]
    same = metrics.chamfer_hausdorff(VA, FA, VA, FA, n=2000)
    assert same["chamfer_l1"] < 1e-9 and same["hausdorff"] < 1e-9


def test_hausdorff_sees_a_far_corner():
    VA, FA = box_mesh(1.0)
    VB, FB = box_mesh([1.0, 1.0, 1.5])
    d = metrics.chamfer_hausdorff(VA, FA, VB, FB, n=2000)
    assert d["hausdorff"] == pytest.approx(0.5, abs=1e-6)
    assert d["a_to_b_mean"] < d["b_to_a_mean"]


def test_sample_surface_is_on_the_surface_area_uniform_and_seeded():
    V, F = box_mesh([2.0, 1.0, 1.0])
    P, N = metrics.sample_surface(V, F, 20000, seed=3)
    on_x = np.isclose(np.abs(P[:, 0]), 2.0)
    inner_x = on_x & (np.abs(P[:, 1:]).max(axis=1) < 1.0 - 1e-9)  # not on an edge of the box
    # the two x faces have area 2 * 4 = 8 of the total 2 * (4 + 8 + 8) = 40
    assert on_x.mean() == pytest.approx(8 / 40, abs=0.015)
    np.testing.assert_allclose(N[inner_x], np.sign(P[inner_x, :1]) * [[1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(N, axis=1), 1.0)
    P2, _ = metrics.sample_surface(V, F, 20000, seed=3)
    np.testing.assert_array_equal(P, P2)

    Vs, Fs = icosphere(1.0, 3)
    P, N = metrics.sample_surface(Vs, Fs, 2000)
    r = np.linalg.norm(P, axis=1)
    assert r.max() <= 1.0 + 1e-12 and r.min() > 0.98
    assert np.all(np.einsum("ij,ij->i", P, N) > 0)


def test_sample_surface_refuses_degenerate_mesh():
    with pytest.raises(BadInputError):
        metrics.sample_surface(np.zeros((3, 3)), np.array([[0, 1, 2]]), 10)


def test_normal_consistency():
    V, F = icosphere(1.0, 3)
    assert metrics.normal_consistency(V, F, V, F, n=2000) == pytest.approx(1.0)
    Vb, Fb = box_mesh(0.8)
    nc = metrics.normal_consistency(V, F, Vb, Fb, n=2000)
    assert 0.5 < nc < 0.95
    # orientation does not matter
    assert metrics.normal_consistency(V, F, V, F[:, ::-1], n=2000) == pytest.approx(1.0)


def test_watertight():
    V, F = box_mesh()
    assert topology.is_watertight(F)
    assert topology.is_watertight(icosphere(1.0, 2)[1])
    assert topology.is_watertight(torus_mesh()[1])
    assert not topology.is_watertight(open_monkey_like()[1])
    flipped = F.copy()
    flipped[0] = flipped[0, ::-1]
    assert not topology.is_watertight(flipped)
    assert not topology.is_watertight(F[1:])
    assert not topology.is_watertight(np.vstack([F, F[:2], F[:2, ::-1]]))  # non-manifold edge
    assert not topology.is_watertight(np.zeros((0, 3), dtype=int))
    assert len(topology.boundary_edges(F)) == 0
    assert len(topology.boundary_edges(F[1:])) == 3


def test_topology_counts():
    V, F = torus_mesh(1.0, 0.3, 24, 12)
    assert topology.euler_characteristic(V, F) == 0
    assert topology.genus(V, F) == 1
    Vs, Fs = icosphere(1.0, 2)
    assert topology.euler_characteristic(Vs, Fs) == 2
    assert topology.genus(Vs, Fs) == 0
    # two tori and a sphere: three components, total genus 2
    V3 = np.vstack([V, V + [3, 0, 0], Vs + [0, 3, 0], [[9, 9, 9]]])  # plus a loose vertex
    F3 = np.vstack([F, F + len(V), Fs + 2 * len(V)])
    assert topology.connected_components(F3) == 3
    assert topology.genus(V3, F3) == 2
    assert topology.connected_components(open_monkey_like()[1]) == 5
    with pytest.raises(BadInputError, match="closed"):
        topology.genus(*open_monkey_like())


def test_signed_volume_and_iou():
    V, F = box_mesh(1.0, center=(5.0, 0.0, 0.0))
    assert topology.signed_volume(V, F) == pytest.approx(8.0)
    assert topology.signed_volume(V, F[:, ::-1]) == pytest.approx(-8.0)
    Vs, Fs = icosphere(1.0, 4)
    assert topology.signed_volume(Vs, Fs) == pytest.approx(4 / 3 * np.pi, rel=0.01)
    a = np.array([1, 1, 0, 0], bool)
    b = np.array([0, 1, 1, 0], bool)
    assert metrics.volume_iou(a, b) == pytest.approx(1 / 3)
    assert metrics.volume_iou(a, a) == 1.0
    assert metrics.volume_iou(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    with pytest.raises(BadInputError):
        metrics.volume_iou(a, b[:3])
