"""Queries on exact fields: gradients, projection and even surface sampling."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lipsdf_blender.core.errors import BadInputError
from lipsdf_blender.core.fields.csg import Transformed, Union
from lipsdf_blender.core.fields.query import (
    evaluate,
    project,
    sample_surface_points,
    value_and_gradient,
)
from lipsdf_blender.core.fields.sdf import BoxField, SphereField


def test_no_bpy():
    assert "bpy" not in sys.modules


def test_value_and_gradient_of_a_sphere_in_batches():
    c = np.array([0.5, -0.25, 1.0])
    P = np.random.default_rng(0).normal(size=(1000, 3)) * 2
    v, g = value_and_gradient(SphereField(c, 0.75), P, batch_size=97)
    assert v.dtype == np.float64 and g.shape == (1000, 3)
    r = np.linalg.norm(P - c, axis=1)
    np.testing.assert_allclose(v, r - 0.75, atol=1e-5)
    np.testing.assert_allclose(g, (P - c) / r[:, None], atol=1e-5)
    np.testing.assert_allclose(evaluate(SphereField(c, 0.75), P, batch_size=97), v)


def test_bad_points_are_refused():
    with pytest.raises(BadInputError, match=r"\(n, 3\)"):
        evaluate(SphereField(), np.zeros((4, 2)))
    with pytest.raises(BadInputError, match="NaN"):
        value_and_gradient(SphereField(), np.array([[0.0, np.nan, 0.0]]))


@pytest.mark.parametrize("level", [0.0, 0.3])
def test_projection_lands_on_the_sphere(level):
    c, r = np.array([1.0, 2.0, 3.0]), 1.5
    P = c + np.random.default_rng(2).uniform(-4, 4, size=(2000, 3))
    Q = project(SphereField(c, r), P, level=level)
    np.testing.assert_allclose(np.linalg.norm(Q - c, axis=1), r + level, atol=1e-5)
    # Projection along the gradient keeps the direction from the centre.
    u = (P - c) / np.linalg.norm(P - c, axis=1)[:, None]
    v = (Q - c) / np.linalg.norm(Q - c, axis=1)[:, None]
    assert np.all(np.einsum("ij,ij->i", u, v) > 1 - 1e-6)


def test_projection_onto_a_transformed_box():
    M = np.eye(4)
    M[:3, :3] = 2.0 * np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    field = Transformed(BoxField((0.0, 0.0, 0.0), (0.5, 0.25, 1.0)), M)
    P = np.random.default_rng(3).uniform(-3, 3, size=(2000, 3))
    Q = project(field, P)
    assert np.abs(evaluate(field, Q)).max() < 1e-5


def face_counts(P, center, half):
    q = (P - center) / half
    axis = np.argmax(np.abs(q), axis=1)
    side = q[np.arange(len(q)), axis] > 0
    return np.bincount(2 * axis + side, minlength=6)


def test_surface_points_cover_a_box_evenly():
    center, half = np.array([0.3, -0.2, 0.5]), np.array([0.8, 0.8, 0.8])
    box = BoxField(center, half)
    n = 3000
    P = sample_surface_points(box, n, seed=4)
    assert P.shape == (n, 3)
    assert np.abs(evaluate(box, P)).max() < 1e-4
    counts = face_counts(P, center, half)
    assert np.all(np.abs(counts / n - 1 / 6) < 0.05 / 6), counts  # within 5 % of a sixth
    # Poisson-disk-like spacing: no two points much closer than the typical spacing.
    from scipy.spatial import cKDTree

    d, _ = cKDTree(P).query(P, k=2)
    spacing = np.sqrt(24 * 0.8**2 / n)
    assert d[:, 1].min() > 0.3 * spacing


def test_surface_points_follow_area_on_an_elongated_box():
    center, half = np.zeros(3), np.array([1.0, 0.5, 0.25])
    P = sample_surface_points(BoxField(center, half), 2000, seed=1)
    counts = face_counts(P, center, half).reshape(3, 2).sum(axis=1)
    area = 2 * np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]])
    np.testing.assert_allclose(counts / 2000, area / area.sum(), atol=0.02)


def test_surface_points_on_a_level_set_of_two_spheres():
    a, b = SphereField((0, 0, 0), 1.0), SphereField((3, 0, 0), 0.5)
    P = sample_surface_points(Union(a, b), 1500, level=0.2, seed=0)
    d = np.minimum(np.linalg.norm(P, axis=1) - 1.0, np.linalg.norm(P - (3, 0, 0), axis=1) - 0.5)
    np.testing.assert_allclose(d, 0.2, atol=1e-4)
    # Both parts are found, in proportion to their areas (1.2^2 : 0.7^2).
    on_b = (P[:, 0] > 1.5).mean()
    assert abs(on_b - 0.49 / (1.44 + 0.49)) < 0.03


def test_sampling_is_reproducible_and_refuses_empty_level_sets():
    s = SphereField()
    np.testing.assert_array_equal(
        sample_surface_points(s, 200, seed=7), sample_surface_points(s, 200, seed=7)
    )
    with pytest.raises(BadInputError, match="empty"):
        sample_surface_points(s, 100, level=-2.0)
    with pytest.raises(BadInputError, match="at least 1"):
        sample_surface_points(s, 0)
