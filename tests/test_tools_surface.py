"""Surface tools: points on a field, safe projection, distance queries, wall thickness,
hollowing; in the core, through the CLI and through a real worker subprocess."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import SPHERE_RADIUS, WORKER_ENV, sphere_cloud

from lipsdf_blender.cli import main as cli
from lipsdf_blender.core.errors import BadInputError
from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.fields.query import (
    evaluate,
    project_safe,
    sample_surface_points,
    spacing,
    value_and_gradient,
)
from lipsdf_blender.core.fields.sdf import BoxField, SphereField
from lipsdf_blender.core.formats.files import load_geometry
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.surfaces.mesh_distance import MeshDistance
from lipsdf_blender.core.surfaces.topology import connected_components, is_watertight, signed_volume
from lipsdf_blender.core.tools.printing import hollow, thickness
from lipsdf_blender.worker import protocol as P
from lipsdf_blender.worker.client import WorkerClient, WorkerError

ENV = WORKER_ENV
OVERRIDES = {
    "depth": 3,
    "width": 16,
    "steps": 400,
    "batch_size": 256,
    "samples": {"n_uniform": 2000, "n_surface": 4000},
}
TRAIN = {"preset": "fast", "device": "cpu", "seed": 3, "overrides": OVERRIDES}


def cube_surface_points(half: float, k: int = 6) -> np.ndarray:
    """A k x k grid on each face of the cube ``[-half, half]^3`` (outside any smaller ball)."""
    t = np.linspace(-half, half, k)
    a, b = (x.ravel() for x in np.meshgrid(t, t, indexing="ij"))
    faces = []
    for axis in range(3):
        for side in (-half, half):
            X = np.empty((len(a), 3))
            X[:, axis] = side
            X[:, [i for i in range(3) if i != axis]] = np.column_stack([a, b])
            faces.append(X)
    return np.unique(np.concatenate(faces), axis=0)


def angles_deg(A, B) -> np.ndarray:
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    B = B / np.linalg.norm(B, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.einsum("ij,ij->i", A, B), -1, 1)))


def rotation(axis, angle) -> np.ndarray:
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- core: points, projection, values -------------------------------------------------------


def test_surface_points_lie_on_the_sphere_evenly_with_radial_normals(sphere_field, one_thread):
    pts = sample_surface_points(sphere_field, 400, seed=1)
    lo, hi = sphere_field.bounds()
    assert np.abs(evaluate(sphere_field, pts)).max() <= 1e-3 * np.linalg.norm(hi - lo)
    assert np.abs(np.linalg.norm(pts, axis=1) - SPHERE_RADIUS).max() < 0.01 * SPHERE_RADIUS
    s = spacing(pts)
    # Uniform random points on a surface have nearest-neighbour distances spread like a
    # Rayleigh law (cv about 0.52, min near 0); a Poisson-disk set is far tighter.
    rng = np.random.default_rng(0)
    U = rng.normal(size=(400, 3))
    U = SPHERE_RADIUS * U / np.linalg.norm(U, axis=1, keepdims=True)
    random = spacing(U)
    assert random["cv"] > 0.4 and random["min"] < 0.3 * random["mean"]
    assert s["cv"] < 0.25 and s["min"] > 0.6 * s["mean"]
    # the mean spacing is a fair share of what 400 points in a hexagonal packing would have
    hex_spacing = math.sqrt(4 * math.pi * SPHERE_RADIUS**2 / 400 * 2 / math.sqrt(3))
    assert 0.65 * hex_spacing < s["mean"] < hex_spacing  # Poisson-disk sets: ~0.75
    _, g = value_and_gradient(sphere_field, pts)
    a = angles_deg(g, pts)
    assert np.median(a) < 4 and a.max() < 8


def test_project_safe_lands_on_spheres_and_never_overshoots(sphere_field, one_thread):
    X0 = cube_surface_points(1.2)
    Q, ok = project_safe(SphereField(radius=0.5), X0)
    assert ok.all()
    np.testing.assert_allclose(np.linalg.norm(Q, axis=1), 0.5, atol=1e-5)
    np.testing.assert_allclose(Q / 0.5, X0 / np.linalg.norm(X0, axis=1, keepdims=True), atol=1e-5)

    Q, ok = project_safe(sphere_field, X0)
    assert ok.all()
    assert np.abs(np.linalg.norm(Q, axis=1) - SPHERE_RADIUS).max() < 0.01 * SPHERE_RADIUS
    # One step at a time: every iterate of a point that starts outside stays outside.
    tol = 1e-6 * 2
    X = X0.copy()
    for _ in range(40):
        X, ok = project_safe(sphere_field, X, iterations=1)
        assert evaluate(sphere_field, X).min() >= -tol
    assert ok.all()
    # Newton steps need far fewer iterations but are allowed to cross; the safe ones never.
    with pytest.raises(BadInputError):
        project_safe(sphere_field, X0, iterations=-1)


def test_distance_values_beside_a_sphere(sphere_field, one_thread):
    y, z = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9), indexing="ij")
    X = np.column_stack([np.full(y.size, 1.3), y.ravel(), z.ravel()])
    c = np.array([0.2, -0.1, 0.0])
    d, g = value_and_gradient(SphereField(center=c, radius=0.5), X)
    np.testing.assert_allclose(d, np.linalg.norm(X - c, axis=1) - 0.5, atol=1e-5)
    np.testing.assert_allclose(g, (X - c) / np.linalg.norm(X - c, axis=1, keepdims=True), atol=1e-5)
    # The trained field is a distance bound with a slope of about 0.9 away from the surface:
    # never above the true distance, at most 25 % below it this far out (+ 1 % of the radius).
    true = np.linalg.norm(X, axis=1) - SPHERE_RADIUS
    f = evaluate(sphere_field, X)
    assert (f <= true + 0.01 * SPHERE_RADIUS).all()
    assert (f >= 0.75 * true - 0.01 * SPHERE_RADIUS).all()


def test_mesh_distance_gradients_match_the_sphere():
    md = MeshDistance(*primitives.icosphere(1.0, 4))
    X = np.random.default_rng(2).uniform(-2, 2, (300, 3))
    X = X[np.abs(np.linalg.norm(X, axis=1) - 1) > 0.05]
    d, g = md.value_and_gradient(X)
    r = np.linalg.norm(X, axis=1)
    np.testing.assert_allclose(d, r - 1, atol=3e-3)  # the icosphere's facets sag < 3e-3
    assert np.median(angles_deg(g, X)) < 2
    np.testing.assert_allclose(np.linalg.norm(g, axis=1), 1, atol=1e-9)
    V, F = primitives.icosphere(1.0, 4)
    d, g = md.value_and_gradient(V)  # on the surface: a face's normal
    assert np.abs(d).max() < 1e-12 and angles_deg(g, V).max() < 4


# -- core: thickness --------------------------------------------------------------------------


def test_thickness_of_a_solid_sphere():
    P_, _ = sphere_cloud(300, radius=1.0)
    th = thickness(SphereField(radius=1.0), P_)
    np.testing.assert_allclose(th, 2.0, rtol=0.02)
    md = MeshDistance(*primitives.icosphere(1.0, 4))
    # exact distance to the mesh, normals of the analytic sphere or of the mesh itself
    np.testing.assert_allclose(thickness(SphereField(radius=1.0), P_, exact=md), 2.0, rtol=0.02)
    np.testing.assert_allclose(thickness(md, P_), 2.0, rtol=0.02)
    np.testing.assert_allclose(thickness(md, md.V), 2.0, rtol=0.02)  # at the mesh's vertices
    # a search limited to diameter 1 finds no wall: inf; a vanishing gradient: nan
    assert np.isinf(thickness(SphereField(radius=1.0), P_[:5], max_diameter=1.0)).all()
    assert np.isnan(thickness(SphereField(radius=1.0), np.zeros((1, 3)))).all()


def test_thickness_of_a_spherical_shell_and_a_box():
    Vo, Fo = primitives.icosphere(1.0, 4)
    Vi, Fi = primitives.icosphere(0.8, 4)
    shell = MeshDistance(np.vstack([Vo, Vi]), np.vstack([Fo, Fi[:, ::-1] + len(Vo)]))
    P_, _ = sphere_cloud(200, radius=1.0)
    np.testing.assert_allclose(thickness(shell, P_), 0.2, rtol=0.02)
    np.testing.assert_allclose(thickness(SphereField(radius=1.0), P_, exact=shell), 0.2, rtol=0.02)
    # box 1.2 x 0.8 x 0.6: at the centres of its largest faces (z) the wall is 0.6
    half = (0.6, 0.4, 0.3)
    Q = np.array([[0, 0, 0.3], [0, 0, -0.3], [0.1, -0.05, 0.3]])
    np.testing.assert_allclose(thickness(BoxField(half_size=half), Q), 0.6, rtol=0.02)
    box = MeshDistance(*primitives.box_mesh(half_size=half))
    np.testing.assert_allclose(thickness(box, Q), 0.6, rtol=0.02)


def test_thickness_with_a_gap_keeps_walls_and_reads_creases_by_their_angle():
    half = (0.6, 0.4, 0.3)
    box = MeshDistance(*primitives.box_mesh(half_size=half))
    faces = np.array([[0, 0, 0.3], [0.1, -0.05, -0.3]])
    edge = np.array([[0.0, 0.4, 0.3]])  # on a right-angled crease
    # Without a gap a crease has no ball touching it; with one, the ball within the gap.
    assert thickness(box, edge)[0] < 0.01
    for gap in (0.02, 0.05):
        np.testing.assert_allclose(thickness(box, faces, gap=gap), 0.6, rtol=0.02)
        t = thickness(box, edge, gap=gap)[0]
        # A ball of radius r in a right-angled wedge comes within r (sqrt 2 - 1) of its crease
        # along the bisector: r = gap / (sqrt 2 - 1), thickness 2 r + gap.
        want = 2 * gap / (np.sqrt(2) - 1) + gap
        assert abs(t - want) < 0.05 * want, (gap, t, want)
    # A wall thinner than the gap is measured without it: a 0.6 box with gap 1 reads 0.6.
    np.testing.assert_allclose(thickness(box, faces, gap=1.0), 0.6, rtol=0.02)
    with pytest.raises(BadInputError, match="gap"):
        thickness(box, faces, gap=-1.0)


def test_thickness_from_a_trained_field_and_its_remesh(sphere_field, one_thread):
    from lipsdf_blender.core.surfaces.remesh import remesh

    r = remesh(sphere_field, 48)
    md = MeshDistance(r.vertices, r.faces)
    V, _ = primitives.icosphere(SPHERE_RADIUS, 3)
    th = thickness(sphere_field, V, exact=md)
    assert abs(np.median(th) - 2 * SPHERE_RADIUS) < 0.01 * 2 * SPHERE_RADIUS
    assert np.abs(th - 2 * SPHERE_RADIUS).max() < 0.06 * 2 * SPHERE_RADIUS
    # the network alone is a distance bound: never thicker than the truth (up to tolerance)
    assert (thickness(sphere_field, V[:50]) <= 2 * SPHERE_RADIUS * 1.01).all()


# -- core: hollow -----------------------------------------------------------------------------


def test_hollow_sphere_volume_orientation_and_too_thick_walls():
    R, w = 1.0, 0.2
    md = MeshDistance(*primitives.icosphere(R, 4))
    V, F, info = hollow(md, w, resolution=48)
    analytic = 4 / 3 * math.pi * (R**3 - (R - w) ** 3)
    assert abs(info["volume"] - analytic) < 0.02 * analytic
    assert info["watertight"] and is_watertight(F)
    assert connected_components(F) == 2
    assert info["volume"] > 0 and signed_volume(V, F) == pytest.approx(info["volume"])
    assert info["volume"] == pytest.approx(info["outer_volume"] - info["inner_volume"])
    assert info["outer_faces"] + info["inner_faces"] == len(F)
    inner = F[info["outer_faces"] :]
    T = V[inner]
    normals = np.cross(T[:, 1] - T[:, 0], T[:, 2] - T[:, 0])
    assert (np.einsum("ij,ij->i", normals, T.mean(axis=1)) < 0).all()  # towards the centre
    r_in = np.linalg.norm(V[np.unique(inner)], axis=1)
    assert np.abs(r_in - (R - w)).max() < 0.01
    with pytest.raises(BadInputError, match="thinner wall"):
        hollow(md, R, resolution=32)
    for bad in (0.0, -0.1, math.nan, math.inf):
        with pytest.raises(BadInputError, match="wall"):
            hollow(md, bad, resolution=32)


# -- CLI ----------------------------------------------------------------------------------


def test_cli_points_and_hollow(sphere_field, tmp_path, capsys, one_thread):
    path = tmp_path / "ball.lipsdf"
    sphere_field.save(path)
    assert (
        cli.main(["points", str(path), "-n", "150", "--seed", "2", "-o", str(tmp_path / "p.ply")])
        == 0
    )
    out = capsys.readouterr().out
    assert "cv" in out
    g = load_geometry(tmp_path / "p.ply")
    assert g.vertices.shape == (150, 3)
    assert np.abs(np.linalg.norm(g.vertices, axis=1) - SPHERE_RADIUS).max() < 0.01
    assert angles_deg(g.normals, g.vertices).max() < 8

    args = [
        "hollow",
        str(path),
        "--wall",
        "0.2",
        "--resolution",
        "40",
        "-o",
        str(tmp_path / "h.obj"),
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "watertight" in out and "NOT" not in out
    m = load_geometry(tmp_path / "h.obj")
    analytic = 4 / 3 * math.pi * (0.8**3 - 0.6**3)
    assert abs(signed_volume(m.vertices, m.faces) - analytic) < 0.04 * analytic
    assert cli.main(["hollow", str(path), "--wall", "2", "-o", str(tmp_path / "x.obj")]) == 2


# -- worker -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    d = tmp_path_factory.mktemp("surface")
    V, F = primitives.icosphere(SPHERE_RADIUS, 3)
    with WorkerClient(env=ENV) as c:
        c.start()
        r = c.run("train", TRAIN, job_dir=d, arrays={"vertices": V, "faces": F}, timeout=120)
        yield c, r["files"]["field"], d


def bad_input(client, job_type, params, d):
    with pytest.raises(WorkerError) as err:
        client.run(job_type, params, d, timeout=60)
    assert err.value.kind == P.BAD_INPUT, err.value
    return str(err.value)


def similarity():
    M = np.eye(4)
    M[:3, :3] = 2.0 * rotation((1, 2, 3), 0.7)
    M[:3, 3] = (0.5, -1.0, 2.0)
    return M


def test_worker_sample_and_project(worker):
    client, field, d = worker
    M = similarity()
    s = client.run("sample", {"field": field, "n": 120, "resolution": 24, "matrix": M.tolist()}, d)
    a = P.load_arrays(s["files"]["points"])
    pts, nrm = a["points"], a["normals"]
    assert pts.shape == nrm.shape == (120, 3)
    # world units: a sphere of radius 1.6 around the translation (the tiny field, 400 steps:
    # within 8 %; in object units it would be a sphere of radius 0.8 around the origin)
    rel = pts - M[:3, 3]
    assert np.abs(np.linalg.norm(rel, axis=1) - 2 * SPHERE_RADIUS).max() < 0.08 * 1.6
    assert np.linalg.norm(rel.mean(axis=0)) < 0.1
    np.testing.assert_allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-6)
    assert np.median(angles_deg(nrm, rel)) < 10
    sp = s["info"]["spacing"]
    assert set(sp) == {"mean", "min", "cv"} and sp["cv"] < 0.3 and sp["min"] > 0.4 * sp["mean"]

    P.save_arrays(d / "near.npz", points=1.3 * pts)
    pr = client.run("project", {"field": field, "points": "near.npz", "matrix": M.tolist()}, d)
    b = P.load_arrays(pr["files"]["points"])
    assert b["converged"].all() and pr["info"]["not_converged"] == 0
    assert pr["info"]["max_residual"] < 1e-4
    local = (b["points"] - M[:3, 3]) @ np.linalg.inv(M[:3, :3]).T
    assert np.abs(Field.load(field).evaluate(local)).max() < 1e-4
    assert "iterations" in bad_input(
        client, "project", {"field": field, "points": "near.npz", "iterations": 5000}, d
    )
    assert "n" in bad_input(client, "sample", {"field": field, "n": 0}, d)


def test_worker_query_in_world_units(worker):
    client, field, d = worker
    M = similarity()
    y, z = np.meshgrid(np.linspace(-1.2, 1.2, 7), np.linspace(-1.2, 1.2, 7), indexing="ij")
    X = np.column_stack([np.full(y.size, 2.2), y.ravel(), z.ravel()]) + M[:3, 3]
    P.save_arrays(d / "q.npz", points=X)
    true = np.linalg.norm(X - M[:3, 3], axis=1) - 2 * SPHERE_RADIUS
    radial = X - M[:3, 3]
    # The world/local conversion exactly: twice the local field at the local points, its
    # gradient rotated into the world.
    f = Field.load(field)
    local = (X - M[:3, 3]) @ np.linalg.inv(M[:3, :3]).T
    d_loc, g_loc = value_and_gradient(f, local)
    R = M[:3, :3] / 2.0
    q = client.run("query", {"field": field, "points": "q.npz", "matrix": M.tolist()}, d)
    a = P.load_arrays(q["files"]["values"])
    np.testing.assert_allclose(a["values"], 2 * d_loc, atol=1e-5)
    np.testing.assert_allclose(a["gradients"], g_loc @ R.T, atol=1e-5)
    # against the analytic distance: a distance bound (the tiny field is slow far out)
    assert (a["values"] <= true + 0.05).all() and (a["values"] >= 0.3 * true - 0.05).all()
    assert np.median(angles_deg(a["gradients"], radial)) < 10
    # exact: the distance to the remesh, 1-Lipschitz and within the remesh's error
    p = {"field": field, "points": "q.npz", "matrix": M.tolist(), "exact": True, "resolution": 32}
    e = P.load_arrays(client.run("query", p, d)["files"]["values"])
    np.testing.assert_allclose(e["values"], true, atol=0.05)
    np.testing.assert_allclose(np.linalg.norm(e["gradients"], axis=1), 1, atol=1e-6)
    assert angles_deg(e["gradients"], radial).max() < 5
    bad = np.diag([1.0, 2.0, 1.0, 1.0]).tolist()
    assert "scale" in bad_input(
        client, "query", {"field": field, "points": "q.npz", "matrix": bad}, d
    )


def test_worker_thickness_and_hollow(worker):
    client, field, d = worker
    V, _ = primitives.icosphere(SPHERE_RADIUS, 2)
    P.save_arrays(d / "v.npz", points=V)
    t = client.run("thickness", {"field": field, "points": "v.npz", "resolution": 32}, d)
    th = P.load_arrays(t["files"]["values"])["thickness"]
    assert th.shape == (len(V),)
    # the tiny field's sphere is a little off round: within 5 % of the diameter 1.6
    assert abs(np.median(th) - 1.6) < 0.05 * 1.6 and t["info"]["median"] == pytest.approx(
        np.median(th)
    )
    assert t["info"]["min"] > 0.8 * 1.6 and t["info"]["seconds"] >= 0
    assert "exact" in bad_input(
        client, "thickness", {"field": field, "points": "v.npz", "exact": "yes"}, d
    )

    h = client.run("hollow", {"field": field, "wall": 0.2, "resolution": 32}, d)
    ((Vh, Fh, level),) = P.load_meshes(h["files"]["meshes"])
    info = h["info"]
    analytic = 4 / 3 * math.pi * (0.8**3 - 0.6**3)
    assert abs(info["volume"] - analytic) < 0.08 * analytic
    assert info["watertight"] and is_watertight(Fh) and connected_components(Fh) == 2
    assert signed_volume(Vh, Fh) == pytest.approx(info["volume"])
    assert info["volume"] == pytest.approx(info["outer_volume"] - info["inner_volume"])
    assert "wall" in bad_input(client, "hollow", {"field": field, "wall": -0.1}, d)
    assert "thinner wall" in bad_input(
        client, "hollow", {"field": field, "wall": 2.0, "resolution": 24}, d
    )
