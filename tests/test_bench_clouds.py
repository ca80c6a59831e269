"""The clouds of the point-cloud benchmark (benchmarks/cloud_inputs.py) on known answers.

Numpy and libigl (the scanner also Open3D's ray casting, skipped without it); the benchmark's
peers are not run here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cloud_inputs as ci  # noqa: E402

from lipsdf_blender.core.inputs.primitives import box_mesh, icosphere  # noqa: E402
from lipsdf_blender.core.surfaces import metrics  # noqa: E402

SPHERE = icosphere(1.0, 4)


def _distance_to(V, F, P) -> np.ndarray:
    return metrics.point_mesh_distance(P, V, F)[0]


def test_noise_has_the_asked_std():
    V, F = SPHERE
    clean, _ = ci.make_cloud(V, F, "clean", n=20000, seed=3)
    noisy, N = ci.make_cloud(V, F, "noise0.5", n=20000, seed=3)
    assert N is None
    step = noisy - clean  # the same clean points under every variant
    sigma = 0.005 * ci.diagonal(V)
    assert np.abs(step.mean(axis=0)).max() < 0.05 * sigma
    assert step.std(axis=0) == pytest.approx(np.full(3, sigma), rel=0.03)


def test_clean_normals_are_the_true_outward_ones():
    V, F = SPHERE
    P, N = ci.make_cloud(V, F, "clean_normals", n=5000)
    assert _distance_to(V, F, P).max() < 1e-9
    assert np.einsum("ij,ij->i", N, P).min() > 0.98  # outward and radial on the unit sphere
    assert ci.make_cloud(V, F, "clean", n=5000)[1] is None


def test_partial_bottom_removes_exactly_the_lowest_15_percent():
    V, F = SPHERE
    lo, hi = V[:, 1].min(), V[:, 1].max()
    cut = lo + 0.15 * (hi - lo)
    P, _ = ci.make_cloud(V, F, "partial_bottom", n=8000, seed=1, up=1)
    assert len(P) == 8000 and _distance_to(V, F, P).max() < 1e-9
    assert P[:, 1].min() >= cut and P[:, 1].min() < cut + 0.01 * (hi - lo)
    # above the cut the density is the clean cloud's: on a sphere the area per height is
    # uniform (Archimedes), so heights are uniform on [cut, hi]
    counts, _ = np.histogram(P[:, 1], bins=5, range=(cut, hi))
    assert np.abs(counts / len(P) - 0.2).max() < 0.02


def test_partial_side_and_other_up_axes():
    V, F = SPHERE
    P, _ = ci.make_cloud(V, F, "partial_side", n=4000)
    w = V[:, 0].max() - V[:, 0].min()
    assert P[:, 0].max() <= V[:, 0].max() - 0.15 * w
    Pz, _ = ci.make_cloud(V, F, "partial_bottom", n=4000, up=2)
    assert Pz[:, 2].min() >= V[:, 2].min() + 0.15 * (V[:, 2].max() - V[:, 2].min())
    assert Pz[:, 1].min() < V[:, 1].min() + 0.05  # y is whole: only z was cut


def test_outliers_are_extra_points_in_the_grown_box():
    V, F = SPHERE
    clean, _ = ci.make_cloud(V, F, "clean", n=4000, seed=2)
    P, _ = ci.make_cloud(V, F, "outliers5", n=4000, seed=2)
    assert len(P) == 4200 and np.array_equal(P[:4000], clean)
    extra = P[4000:]
    lo, hi = metrics.grown_box(V, 0.10)
    assert np.all(extra >= lo) and np.all(extra <= hi)
    # spread over the box (lo -1.2, hi 1.2 a side), not near the surface
    assert extra.min(axis=0).max() < -1.0 and extra.max(axis=0).min() > 1.0
    assert (_distance_to(V, F, extra) > 0.1).mean() > 0.5


def test_sparse_clouds_have_their_own_count():
    V, F = SPHERE
    assert len(ci.make_cloud(V, F, "sparse500", n=100_000)[0]) == 500


def test_scan_sees_only_what_the_cameras_see():
    pytest.importorskip("open3d")
    V, F = SPHERE
    eyes = ci.camera_positions(V, up=2)
    P = ci.scan(V, F, eyes, 6000, np.random.default_rng(0))
    assert len(P) == 6000 and _distance_to(V, F, P).max() < 1e-5
    # a point of a convex surface is seen from an eye iff the eye is on its outer side
    n = P / np.linalg.norm(P, axis=1, keepdims=True)
    seen = np.einsum("ij,kj->ik", n, eyes) - np.einsum("ij,ij->i", n, P)[:, None] > -0.01
    assert seen.any(axis=1).all()
    # none below: the lowest eyes (20 degrees up, 2 diagonals away) see down to latitude
    # 20 - acos(1 / distance) degrees and no further
    distance = float(np.linalg.norm(eyes[0]))
    lowest = 20.0 - np.degrees(np.arccos(1.0 / distance))
    latitude = np.degrees(np.arcsin(n[:, 2]))
    assert latitude.min() >= lowest - 1.0
    assert latitude.min() < -45.0  # and well below the equator (the grazing limb gets few rays)


def test_scan_never_sees_a_part_hidden_inside():
    pytest.importorskip("open3d")
    Vo, Fo = box_mesh(1.0)
    Vi, Fi = box_mesh(0.5)
    V, F = np.vstack([Vo, Vi]), np.vstack([Fo, Fi + len(Vo)])
    P, N = ci.make_cloud(V, F, "scan_views", n=3000, up=2)
    assert N is None and len(P) == 3000
    noise = 0.001 * ci.diagonal(V)
    assert np.abs(P).max(axis=1).min() > 1.0 - 5 * noise  # all on the outer box
    on_bottom = (P[:, 2] < -1.0 + 5 * noise) & (np.abs(P[:, :2]).max(axis=1) < 0.9)
    assert not on_bottom.any()  # no camera is below: the bottom face is never seen
    on_top = (P[:, 2] > 1.0 - 5 * noise) & (np.abs(P[:, :2]).max(axis=1) < 0.9)
    assert on_top.any()
