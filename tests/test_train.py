"""Trained fields are distance bounds with the right signs, and their surfaces are right.

Small networks and short schedules (conftest.TINY) keep this within the default test run; the
real presets are measured by benchmarks/bench_core.py.
"""

import numpy as np
import pytest
import torch
from conftest import SPHERE_RADIUS, TINY, random_points

from lipsdf_blender.core.errors import BadInputError, CancelledError
from lipsdf_blender.core.fields.csg import combine
from lipsdf_blender.core.fields.network import LipschitzMLP
from lipsdf_blender.core.fields.query import value_and_gradient
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.surfaces import topology
from lipsdf_blender.core.surfaces.extract import extract, extract_levels
from lipsdf_blender.core.surfaces.remesh import offset_surfaces
from lipsdf_blender.core.training.train import Adam, _Reporter, train_field


def sphere_distance(P, r=SPHERE_RADIUS, c=(0, 0, 0)):
    return np.linalg.norm(P - np.asarray(c), axis=1) - r


def distance_to_unit_circle(P):
    """Distance to the unit circle in the xy-plane (a torus's core circle)."""
    return np.hypot(np.linalg.norm(P[:, :2], axis=1) - 1.0, P[:, 2])


def box_distance(P, h=(0.6, 0.4, 0.3)):
    q = np.abs(P) - np.asarray(h)
    return np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(axis=1), 0)


@pytest.mark.parametrize(
    "name,dist,half", [("sphere_field", sphere_distance, 1.1), ("box_field", box_distance, 0.9)]
)
def test_signs_and_distances(name, dist, half, request):
    field = request.getfixturevalue(name)
    m = field.record["margin"]
    rng = np.random.default_rng(0)
    P = random_points(50_000, half)
    # Points near the surface too: the sign must hold there as well.
    Q = P + rng.normal(size=P.shape) * 0.05
    P = np.concatenate([P, Q])
    d = dist(P)
    f = field.evaluate(P)
    # The tiny test network rounds the box's corners by about a hundredth of its size.
    away = np.abs(d) > 2 * m + 0.015
    assert np.all(np.sign(f[away]) == np.sign(d[away])), "wrong sign"
    near = np.abs(d) < 0.03
    assert np.abs(f[near] - d[near]).max() <= m + 0.03
    # A distance bound: 1-Lipschitz means |f(x)| <= d(x) + |f| on the true surface, so |f|
    # exceeds the true distance by no more than the surface error (largest at box corners).
    assert np.all(np.abs(f) <= np.abs(d) + m + 0.025)
    # And it is distance-like, not merely a bound: the slope away from the surface is near 1.
    far = np.abs(d) > 0.1
    assert np.median(np.abs(f[far]) / np.abs(d[far])) > 0.75


@pytest.mark.parametrize("name", ["sphere_field", "box_field"])
def test_trained_gradient_norm_at_most_one(name, request):
    field = request.getfixturevalue(name)
    P = random_points(100_000, 1.5, seed=3)
    _, g = value_and_gradient(field, P)
    assert np.linalg.norm(g, axis=1).max() <= 1 + 1e-5


def test_remeshed_sphere_within_one_percent(sphere_field):
    r = extract(sphere_field, 0.0, resolution=128)
    radius = np.linalg.norm(r.vertices, axis=1)
    assert np.abs(radius - SPHERE_RADIUS).max() <= 0.01 * SPHERE_RADIUS
    assert topology.is_watertight(r.faces)
    assert topology.signed_volume(r.vertices, r.faces) > 0


def test_offsets_are_nested_at_the_right_radii(sphere_field):
    results = offset_surfaces(sphere_field, [0.1, 0.2], resolution=96)
    radii = [np.linalg.norm(r.vertices, axis=1) for r in results]
    for r, level in zip(radii, (0.1, 0.2), strict=True):
        assert np.abs(r - (SPHERE_RADIUS + level)).max() <= 0.01 * (SPHERE_RADIUS + level)
    assert radii[0].max() < radii[1].min(), "offsets must be nested"
    for r in results:
        assert topology.is_watertight(r.faces)
    # Inward too.
    (inner,) = offset_surfaces(sphere_field, [-0.2], resolution=96)
    rin = np.linalg.norm(inner.vertices, axis=1)
    assert np.abs(rin - (SPHERE_RADIUS - 0.2)).max() <= 0.01 * SPHERE_RADIUS


def test_raw_level_sets_are_conservative_offsets(sphere_field):
    """The field's own level set f = D is never nearer than D: the field is a distance bound."""
    raw = extract_levels(sphere_field, [0.1, 0.2], resolution=96)
    m = sphere_field.record["margin"]
    for r, level in zip(raw, (0.1, 0.2), strict=True):
        radius = np.linalg.norm(r.vertices, axis=1)
        # Not nearer than asked (up to the surface error and one cell of marching cubes) ...
        assert radius.min() >= SPHERE_RADIUS + level - m - 0.01
        # ... and not absurdly far: the trained slope is close to 1.
        assert radius.max() <= SPHERE_RADIUS + 1.3 * level


def two_spheres_exact(op, P):
    """Exact CSG value of the spheres at x = -0.4 and x = 0.5 (radius SPHERE_RADIUS)."""
    d1, d2 = sphere_distance(P, c=(-0.4, 0, 0)), sphere_distance(P, c=(0.5, 0, 0))
    return {
        "union": np.minimum(d1, d2),
        "intersection": np.maximum(d1, d2),
        "difference": np.maximum(d1, -d2),
    }[op]


@pytest.mark.parametrize("op", ["union", "intersection", "difference"])
def test_csg_of_two_spheres_matches_analytic(sphere_field, op):
    a = np.eye(4)
    a[0, 3] = -0.4
    b = np.eye(4)
    b[0, 3] = 0.5
    target = combine(op, [sphere_field, sphere_field], matrices=[a, b])
    P = random_points(60_000, 1.5, seed=5)
    exact = two_spheres_exact(op, P)
    with torch.no_grad():
        f = target(torch.from_numpy(P).float()).double().numpy()
    m = sphere_field.record["margin"]
    away = np.abs(exact) > 2 * m + 0.01
    assert np.all(np.sign(f[away]) == np.sign(exact[away]))
    near = np.abs(exact) < 0.03
    assert np.abs(f[near] - exact[near]).max() <= m + 0.03
    mesh = extract(target, 0.0, resolution=96)
    assert topology.is_watertight(mesh.faces)
    # Every vertex of the result lies on the analytic surface.
    assert np.abs(two_spheres_exact(op, mesh.vertices)).max() <= 0.02


def test_open_self_intersecting_input_gives_one_closed_surface():
    V, F = primitives.open_monkey_like()
    assert not topology.is_watertight(F)
    field = train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=0, **TINY)
    r = extract(field, 0.0, resolution=96)
    assert topology.is_watertight(r.faces)
    assert topology.connected_components(r.faces) == 1
    assert topology.signed_volume(r.vertices, r.faces) > 0


def test_torus_point_cloud_without_normals_gives_genus_one():
    P = primitives.torus_points(4000, R=1.0, r=0.35, seed=0)
    field = train_field(Geometry.points(P), "fast", device="cpu", seed=0, **TINY)
    r = extract(field, 0.0, resolution=96)
    assert topology.is_watertight(r.faces)
    assert topology.connected_components(r.faces) == 1
    assert topology.genus(r.vertices, r.faces) == 1
    # And it lies on the torus.
    assert np.abs(distance_to_unit_circle(r.vertices) - 0.35).max() < 0.05


def test_unsigned_field_of_a_curve_is_a_thin_tube():
    V, E = primitives.curve_circle(64, 1.0)
    field = train_field(
        Geometry.curve(V, E), "fast", mode="unsigned", device="cpu", thickness=0.05, **TINY
    )
    r = extract(field, 0.0, resolution=96)
    assert topology.is_watertight(r.faces)
    assert topology.genus(r.vertices, r.faces) == 1
    assert np.abs(distance_to_unit_circle(r.vertices) - 0.05).max() < 0.04


def test_cancel_stops_training_and_bad_input_is_refused():
    V, F = primitives.icosphere(1.0, 2)
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(CancelledError):
        train_field(Geometry.mesh(V, F), "fast", device="cpu", cancel=cancel, **TINY)
    bad = V.copy()
    bad[3, 1] = np.nan
    with pytest.raises(BadInputError, match="NaN"):
        train_field(Geometry.mesh(bad, F), "fast", device="cpu", **TINY)
    with pytest.raises(BadInputError, match="unsigned"):
        train_field(Geometry.curve(*primitives.curve_circle(16)), "fast", device="cpu", **TINY)


def test_same_seed_same_field():
    V, F = primitives.icosphere(1.0, 2)
    kw = dict(TINY, steps=50)
    a = train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=7, **kw)
    b = train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=7, **kw)
    P = random_points(100, 1.0)
    np.testing.assert_array_equal(a.evaluate(P), b.evaluate(P))


def _feed(reporter, clock, times):
    """Report as ``_optimise`` does (steps 1, 16, 31, ... and the last) at ``times(step)``."""
    steps = list(range(1, reporter.total + 1, 15))
    if steps[-1] != reporter.total:
        steps.append(reporter.total)
    for step in steps:
        clock[0] = times(step)
        reporter(step, 0.1, force=step == reporter.total)


def test_eta_waits_out_the_first_steps_then_follows_the_recent_rate():
    # 3000 steps: the first takes 3 s (allocation, warm-up), the next 1499 take 10 ms each,
    # the rest 20 ms (the machine got busy). Reporting from the start said "2.5 hours".
    def times(step):
        t = 3.0 + 0.01 * (min(step, 1500) - 1)
        return t + 0.02 * max(step - 1500, 0)

    def at_current_rate(step):  # what anyone can know: the rate now, times the steps left
        return (0.01 if step <= 1500 else 0.02) * (3000 - step)

    clock, seen = [0.0], []
    r = _Reporter(seen.append, 3000, "CPU", interval=0.0, clock=lambda: clock[0])
    _feed(r, clock, times)
    assert [p.step for p in seen][:3] == [1, 16, 31] and seen[-1].step == 3000
    for p in seen:
        since_first = times(p.step) - times(1)
        if since_first < _Reporter.MIN_SECONDS:
            assert np.isnan(p.eta), p  # too early to tell: no ETA at all
            continue
        assert np.isfinite(p.eta) and p.eta <= 60.0, p
        if p.step < 1400:  # the steady first half: within 2 % of the truth
            assert abs(p.eta - at_current_rate(p.step)) <= 0.02 * at_current_rate(p.step), p
        if p.step > 1500 + 300:  # the slow-down is followed once it fills the window
            assert abs(p.eta - at_current_rate(p.step)) <= 0.02 * at_current_rate(p.step), p
    assert seen[-1].eta == 0.0


def test_eta_of_a_short_job_never_starts_from_one_slow_step():
    clock, seen = [0.0], []
    r = _Reporter(seen.append, 200, "CPU", interval=0.25, clock=lambda: clock[0])
    _feed(r, clock, lambda step: 2.0 + 0.004 * (step - 1))  # 0.8 s of real steps
    etas = [p.eta for p in seen if np.isfinite(p.eta)]
    assert np.isnan(seen[0].eta) and etas and max(etas) <= 0.004 * 200


def test_the_eager_adam_takes_torchs_steps_and_the_layers_stay_lipschitz():
    """Training's own Adam (it spares the CPU torch's dynamo import) gives torch's weights,
    bit for bit, and the network it trains still has gradient norm at most 1."""
    torch.manual_seed(0)
    a, b = LipschitzMLP(4, 16), LipschitzMLP(4, 16)
    b.load_state_dict(a.state_dict())
    ours, theirs = Adam(a.parameters(), lr=1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    x = torch.randn(256, 3)
    for step in range(30):
        for net, opt in ((a, ours), (b, theirs)):
            opt.param_groups[0]["lr"] = 1e-2 * (1 - step / 30)
            opt.zero_grad()
            (net(x) - x.norm(dim=1)).square().mean().backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    y = torch.randn(500, 3, requires_grad=True)
    (g,) = torch.autograd.grad(a(y).sum(), y)
    assert g.norm(dim=1).max() <= 1 + 1e-5
