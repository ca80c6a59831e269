"""CSG on exact fields, checked against the analytic answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipsdf_blender.core.errors import BadInputError
from lipsdf_blender.core.fields.csg import (
    Difference,
    Intersection,
    Offset,
    SmoothDifference,
    SmoothIntersection,
    SmoothUnion,
    Transformed,
    Union,
    combine,
    smooth_min,
)
from lipsdf_blender.core.fields.query import evaluate, value_and_gradient
from lipsdf_blender.core.fields.sdf import BoxField, DistanceField, SphereField

CA, RA = np.array([0.0, 0.0, 0.0]), 1.0
CB, RB = np.array([1.2, 0.3, -0.1]), 0.8
K = 0.3


@pytest.fixture
def spheres():
    return SphereField(CA, RA), SphereField(CB, RB)


@pytest.fixture
def points():
    return np.random.default_rng(1).uniform(-2.0, 3.0, size=(10_000, 3))


def exact(P, c, r):
    return np.linalg.norm(P - c, axis=1) - r


def rotation(axis, angle):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    K_ = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K_ + (1 - np.cos(angle)) * K_ @ K_


def similarity(scale, axis=(1.0, 2.0, 3.0), angle=0.7, t=(0.5, -1.0, 2.0)):
    M = np.eye(4)
    M[:3, :3] = scale * rotation(axis, angle)
    M[:3, 3] = t
    return M


def test_every_node_follows_the_protocol(spheres):
    a, b = spheres
    nodes = [
        Union(a, b),
        Intersection(a, b),
        Difference(a, b),
        SmoothUnion([a, b], K),
        SmoothIntersection([a, b], K),
        SmoothDifference(a, b, K),
        Offset(a, 0.1),
        Transformed(a, np.eye(4)),
    ]
    for node in nodes:
        assert isinstance(node, DistanceField)


def test_hard_booleans_match_the_analytic_sets(spheres, points):
    a, b = spheres
    da, db = exact(points, CA, RA), exact(points, CB, RB)
    in_a, in_b = da < 0, db < 0
    ok = (np.abs(da) > 1e-5) & (np.abs(db) > 1e-5)  # skip points too close to either surface

    u = evaluate(Union(a, b), points)
    np.testing.assert_allclose(u, np.minimum(da, db), atol=1e-5)
    assert np.array_equal((u < 0)[ok], (in_a | in_b)[ok])
    # Outside the union the min of two exact distances is the exact distance to the union.
    outside = ~(in_a | in_b)
    np.testing.assert_allclose(u[outside], np.minimum(da, db)[outside], atol=1e-5)

    i = evaluate(Intersection(a, b), points)
    np.testing.assert_allclose(i, np.maximum(da, db), atol=1e-5)
    assert np.array_equal((i < 0)[ok], (in_a & in_b)[ok])

    d = evaluate(Difference(a, b), points)
    np.testing.assert_allclose(d, np.maximum(da, -db), atol=1e-5)
    assert np.array_equal((d < 0)[ok], (in_a & ~in_b)[ok])


def test_union_of_three_and_bounds(spheres):
    a, b = spheres
    c = SphereField((-1.0, -1.0, 2.0), 0.5)
    lo, hi = Union(a, b, c).bounds()
    np.testing.assert_allclose(lo, [-1.5, -1.5, -1.0])
    np.testing.assert_allclose(hi, [2.0, 1.1, 2.5])
    lo, hi = Intersection(a, b).bounds()
    np.testing.assert_allclose(lo, [0.4, -0.5, -0.9])
    np.testing.assert_allclose(hi, [1.0, 1.0, 0.7])
    lo, hi = Difference(a, b).bounds()
    np.testing.assert_allclose(lo, [-1, -1, -1])
    np.testing.assert_allclose(hi, [1, 1, 1])
    lo, hi = SmoothUnion([a, b], K).bounds()
    np.testing.assert_allclose(lo, [-1 - K, -1 - K, -1 - K])


def test_disjoint_intersection_is_refused():
    far = Intersection(SphereField((0, 0, 0), 1.0), SphereField((5, 0, 0), 1.0))
    with pytest.raises(BadInputError, match="do not overlap"):
        far.bounds()
    with pytest.raises(BadInputError, match="do not overlap"):
        combine("intersection", [SphereField(), SphereField((5, 0, 0))], blend=0.1).bounds()


def test_smooth_min_is_convex_combination():
    a = torch.linspace(-1, 1, 2001, dtype=torch.float64, requires_grad=True)
    b = torch.zeros_like(a, requires_grad=True)
    s = smooth_min(a, b, 0.5)
    ga, gb = torch.autograd.grad(s.sum(), (a, b))
    assert torch.all(ga >= 0) and torch.all(gb >= 0)
    torch.testing.assert_close(ga + gb, torch.ones_like(ga))
    assert torch.all(s <= torch.minimum(a, b) + 1e-12)
    assert torch.all(s >= torch.minimum(a, b) - 0.5 / 4 - 1e-12)
    assert abs(float(s[1000].detach()) + 0.5 / 4) < 1e-12  # the k/4 bound is reached at a = b


@pytest.mark.parametrize("kind", ["union", "intersection", "difference"])
def test_smooth_booleans_are_lipschitz_and_bounded(spheres, points, kind):
    a, b = spheres
    da, db = exact(points, CA, RA), exact(points, CB, RB)
    if kind == "union":
        field, hard, x, y = SmoothUnion([a, b], K), np.minimum(da, db), da, db
    elif kind == "intersection":
        field, hard, x, y = SmoothIntersection([a, b], K), np.maximum(da, db), da, db
    else:
        field, hard, x, y = SmoothDifference(a, b, K), np.maximum(da, -db), da, -db

    v, g = value_and_gradient(field, points)
    assert np.linalg.norm(g, axis=1).max() <= 1 + 1e-5
    if kind == "union":
        assert np.all(v <= hard + 1e-5)
        assert np.all(v >= hard - K / 4 - 1e-5)
    else:
        assert np.all(v >= hard - 1e-5)
        assert np.all(v <= hard + K / 4 + 1e-5)
    far = np.abs(x - y) >= K + 1e-4
    assert far.sum() > 1000
    np.testing.assert_allclose(v[far], hard[far], atol=1e-5)
    blend = np.abs(x - y) < 0.5 * K
    assert np.all(np.abs(v[blend] - hard[blend]) > 1e-4)  # the blend does change the field


def test_smooth_union_of_many_stays_lipschitz(points):
    fields = [SphereField((0.4 * i, 0.1 * i, 0.0), 0.6) for i in range(6)]
    v, g = value_and_gradient(SmoothUnion(fields, 0.5), points)
    hard = np.min([exact(points, f.center, f.radius) for f in fields], axis=0)
    assert np.linalg.norm(g, axis=1).max() <= 1 + 1e-5
    assert np.all(v <= hard + 1e-5) and np.all(v >= hard - 5 * 0.5 / 4 - 1e-5)


def test_transformed_sphere_is_exact(points):
    c, r = np.array([0.3, -0.2, 0.1]), 0.7
    M = similarity(2.0)
    v = evaluate(Transformed(SphereField(c, r), M, name="Ball"), points)
    world_c = M[:3, :3] @ c + M[:3, 3]
    np.testing.assert_allclose(v, exact(points, world_c, 2 * r), atol=2e-5)
    lo, hi = Transformed(SphereField(c, r), M).bounds()
    assert np.all(lo <= world_c - 2 * r + 1e-9) and np.all(hi >= world_c + 2 * r - 1e-9)


def test_transformed_box_bounds_and_mirror(points):
    box = BoxField((1.0, 0.0, 0.0), (1.0, 0.5, 0.25))
    M = np.diag([-3.0, 3.0, 3.0, 1.0])  # a mirror with uniform scale keeps distances
    field = Transformed(box, M)
    lo, hi = field.bounds()
    np.testing.assert_allclose(lo, [-6.0, -1.5, -0.75])
    np.testing.assert_allclose(hi, [0.0, 1.5, 0.75])
    mirrored = BoxField((-3.0, 0.0, 0.0), (3.0, 1.5, 0.75))
    np.testing.assert_allclose(evaluate(field, points), evaluate(mirrored, points), atol=2e-5)


def test_transformed_refuses_non_similarities():
    M = np.diag([1.0, 2.0, 1.0, 1.0])
    with pytest.raises(BadInputError, match=r"Cube.*non-uniform scale \(1, 2, 1\)"):
        Transformed(SphereField(), M, name="Cube")
    R = np.eye(4)
    R[:3, :3] = rotation((0, 0, 1), 0.5) @ np.diag([1.0, 1.5, 1.0])
    with pytest.raises(BadInputError, match="Ctrl\\+A"):
        Transformed(SphereField(), R)
    shear = np.eye(4)
    shear[:3, :3] = [[1.0, 0.3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    shear[:3, :3] /= np.linalg.norm(shear[:3, :3], axis=0)  # equal column lengths, still sheared
    with pytest.raises(BadInputError, match="shear"):
        Transformed(SphereField(), shear)
    with pytest.raises(BadInputError, match="zero scale"):
        Transformed(SphereField(), np.diag([0.0, 0.0, 0.0, 1.0]))
    with pytest.raises(BadInputError, match="perspective"):
        P = np.eye(4)
        P[3, 2] = 1.0
        Transformed(SphereField(), P)
    # A float32 round trip (as Blender stores matrices) still counts as uniform.
    Transformed(SphereField(), similarity(2.0).astype(np.float32))


@pytest.mark.parametrize("distance", [0.1, 0.2, -0.3])
def test_offset_sphere_is_a_bigger_sphere(points, distance):
    field = Offset(SphereField(CA, RA), distance)
    np.testing.assert_allclose(evaluate(field, points), exact(points, CA, RA + distance), atol=1e-5)
    lo, hi = field.bounds()
    grow = max(distance, 0.0)
    np.testing.assert_allclose(hi, CA + RA + grow)


def test_combine(spheres, points):
    a, b = spheres
    da, db = exact(points, CA, RA), exact(points, CB, RB)
    assert isinstance(combine("union", [a, b]), Union)
    assert isinstance(combine("union", [a, b], blend=K), SmoothUnion)
    assert isinstance(combine("intersection", [a, b], blend=K), SmoothIntersection)
    assert isinstance(combine("difference", [a, b], blend=K), SmoothDifference)
    c = SphereField((0.0, 0.0, 1.0), 0.5)
    v = evaluate(combine("difference", [a, b, c]), points)
    dc = exact(points, c.center, c.radius)
    np.testing.assert_allclose(v, np.maximum(da, np.maximum(-db, -dc)), atol=1e-5)

    M = similarity(1.5)
    moved = combine("union", [a, b], matrices=[M, np.eye(4)], names=["A", "B"])
    world_ca = M[:3, :3] @ CA + M[:3, 3]
    np.testing.assert_allclose(
        evaluate(moved, points), np.minimum(exact(points, world_ca, 1.5 * RA), db), atol=2e-5
    )


def test_combine_refuses_bad_input(spheres):
    a, b = spheres
    with pytest.raises(BadInputError, match="unknown CSG operation"):
        combine("xor", [a, b])
    with pytest.raises(BadInputError, match="at least two"):
        combine("union", [a])
    with pytest.raises(BadInputError, match="blend"):
        combine("union", [a, b], blend=-1.0)
    with pytest.raises(BadInputError, match="matrices"):
        combine("union", [a, b], matrices=[np.eye(4)])
    with pytest.raises(BadInputError, match="Stretched.*non-uniform scale"):
        combine(
            "union", [a, b], matrices=[np.eye(4), np.diag([1, 1, 3, 1])], names=["A", "Stretched"]
        )
    with pytest.raises(BadInputError, match="not a distance field"):
        combine("union", [a, "b"])
