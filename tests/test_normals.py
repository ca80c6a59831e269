"""Normal estimation, orientation and point areas for bare point clouds (core.inputs.normals)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lipsdf_blender.core.errors import BadInputError
from lipsdf_blender.core.inputs.normals import (
    estimate_normals,
    orientation_score,
    point_areas,
    winding_number,
)
from lipsdf_blender.core.inputs.primitives import icosphere, torus_points

R, r = 1.0, 0.25


def torus_normals(P: np.ndarray) -> np.ndarray:
    """Analytic outward normals of points on the torus (R, r) around z."""
    c = np.zeros_like(P)
    c[:, :2] = R * P[:, :2] / np.linalg.norm(P[:, :2], axis=1, keepdims=True)
    n = P - c
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def nonuniform_sphere(n: int, ratio: float, seed: int = 0) -> np.ndarray:
    """Points on the unit sphere, ``ratio`` times denser at +x than at -x."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    w = 1.0 + (ratio - 1.0) * ((X[:, 0] + 1.0) / 2.0) ** 2
    return X[rng.random(n) < w / w.max()]


def ball_queries(n: int, r_lo: float, r_hi: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    Q = rng.normal(size=(n, 3))
    return Q / np.linalg.norm(Q, axis=1, keepdims=True) * rng.uniform(r_lo, r_hi, (n, 1))


def assert_outward(N: np.ndarray, N_true: np.ndarray) -> None:
    dots = np.einsum("ij,ij->i", N, N_true)
    np.testing.assert_allclose(np.linalg.norm(N, axis=1), 1.0)
    assert dots.mean() > 0.95, dots.mean()
    assert np.mean(dots < 0) < 0.01, np.mean(dots < 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_torus_cloud_normals_point_outward(seed):
    P = torus_points(2000, R, r, seed)
    assert_outward(estimate_normals(P), torus_normals(P))


def test_nonuniform_sphere_normals_point_outward():
    P = nonuniform_sphere(3000, ratio=10.0) * 2.0 + [5.0, -1.0, 0.5]  # off-centre, scaled
    N_true = (P - [5.0, -1.0, 0.5]) / 2.0
    assert_outward(estimate_normals(P), N_true)


def test_each_separate_part_is_oriented_outward():
    rng = np.random.default_rng(2)
    A = rng.normal(size=(800, 3))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    B = A[:400] * 0.5 + [4.0, 0.0, 0.0]
    P = np.vstack([A, B])
    N_true = np.vstack([A, A[:400]])
    assert_outward(estimate_normals(P), N_true)


def test_open_cap_normals_point_to_its_convex_side():
    P = nonuniform_sphere(3000, ratio=1.0, seed=3)
    P = P[P[:, 2] > 0.3]  # a cap with a big hole
    N = estimate_normals(P)
    assert np.mean(np.einsum("ij,ij->i", N, P) > 0) > 0.99


def test_winding_number_from_estimated_normals_and_areas_on_torus():
    P = torus_points(3000, R, r, seed=5)
    N = estimate_normals(P)
    A = point_areas(P, N)
    assert A.sum() == pytest.approx(4 * np.pi**2 * R * r, rel=0.05)
    t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    inside = np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], 1)  # the tube's core circle
    inside = np.vstack([inside, inside * 1.1 + [0, 0, 0.1]])
    outside = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0, 0.4], [1, 0, 0.35], [3, 3, 3], [1.4, 0, 0]])
    np.testing.assert_allclose(winding_number(P, N, A, inside), 1.0, atol=0.05)
    np.testing.assert_allclose(winding_number(P, N, A, outside), 0.0, atol=0.05)


@pytest.mark.parametrize("ratio", [1.0, 10.0])
def test_point_areas_give_winding_one_inside_sphere(ratio):
    P = nonuniform_sphere(4000 if ratio == 1.0 else 3000, ratio)
    A = point_areas(P)  # normals estimated inside
    assert A.sum() == pytest.approx(4 * np.pi, rel=0.03)
    assert np.all(A > 0)
    w_in = winding_number(P, P, A, ball_queries(200, 0.0, 0.8))
    w_out = winding_number(P, P, A, ball_queries(200, 1.25, 3.0))
    # the far field's first-order expansion (EXPANSION_ORDER) is off by up to about 0.08 here
    np.testing.assert_allclose(w_in, 1.0, atol=0.1)
    np.testing.assert_allclose(w_out, 0.0, atol=0.1)


def test_point_areas_match_mesh_vertex_areas():
    V, F = icosphere(1.0, 4)
    A = point_areas(V)
    # each vertex of this nearly regular mesh stands for about a third of its faces' area
    e = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
    bary = np.zeros(len(V))
    np.add.at(bary, F.ravel(), np.repeat(0.5 * np.linalg.norm(e, axis=1) / 3, 3))
    np.testing.assert_allclose(A, bary, rtol=0.15)


def test_duplicate_points_share_area_and_do_not_crash_the_winding_number():
    P = nonuniform_sphere(1000, 1.0)
    P2 = np.vstack([P, P[:10]])
    A2 = point_areas(P2)
    # twins split one cell (their neighbours see one distinct point fewer: tiny change)
    np.testing.assert_allclose(A2[:10], A2[-10:])
    assert A2.sum() == pytest.approx(point_areas(P).sum(), rel=2e-3)
    N2 = estimate_normals(P2)
    # libigl's point-cloud octree recurses forever on coincident points; the wrapper merges them
    w = winding_number(P2, N2, A2, np.array([[0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]))
    np.testing.assert_allclose(w, [1.0, 0.0], atol=0.1)  # first-order far field: 1.07 here


def test_orientation_score_tells_outward_from_inward():
    P = torus_points(2000, R, r, seed=6)
    N = torus_normals(P)
    A = point_areas(P, N)
    assert orientation_score(P, N, A) > 0.7
    assert orientation_score(P, -N, A) < -0.7
    plane = np.random.default_rng(0).uniform(-1, 1, (1000, 3)) * [1, 1, 0]
    Np = np.tile([0.0, 0.0, 1.0], (1000, 1))
    assert abs(orientation_score(plane, Np, point_areas(plane, Np))) < 0.2


@pytest.mark.parametrize(
    "P, words",
    [
        (np.zeros((3, 3)), ["At least 4"]),
        (np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [np.nan, 0, 0]]), ["NaN"]),
        (np.zeros((10, 2)), ["(n, 3)"]),
    ],
)
def test_bad_clouds_are_refused(P, words):
    with pytest.raises(BadInputError) as info:
        estimate_normals(P)
    for w in words:
        assert w in str(info.value)


BUNNY = os.path.join(
    os.path.dirname(__file__), "..", "..", "shared", "meshes", "stanford-bunny.obj"
)


@pytest.mark.slow
def test_bunny_vertex_normals_agree_with_mesh_normals():
    import igl

    from lipsdf_blender.core.formats.files import load_geometry

    if not os.path.exists(BUNNY):
        pytest.skip("benchmark meshes not present")
    g = load_geometry(BUNNY)
    V, F = g.vertices, g.faces
    N_mesh = igl.per_vertex_normals(V, F, igl.PER_VERTEX_NORMALS_WEIGHTING_TYPE_AREA)
    used = np.isfinite(N_mesh).all(axis=1) & (np.linalg.norm(N_mesh, axis=1) > 0.5)
    N = estimate_normals(V)  # the vertices alone, without faces
    agree = float(np.mean(np.einsum("ij,ij->i", N[used], N_mesh[used]) > 0))
    print(f"bunny: {agree:.2%} of {used.sum()} vertex normals agree in sign with the mesh")
    assert agree > 0.95
