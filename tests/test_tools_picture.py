"""Slice pictures and sphere-traced previews: core against analytic answers, worker, CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SPHERE_RADIUS

from lipsdf_blender.core.errors import BadInputError, CancelledError
from lipsdf_blender.core.fields.csg import Union, combine
from lipsdf_blender.core.fields.sdf import SphereField
from lipsdf_blender.core.surfaces.remesh import remesh
from lipsdf_blender.core.tools.slicing import slice_image
from lipsdf_blender.core.tools.trace import (
    BOX_MARGIN,
    EPS_FRACTION,
    FOOTPRINT_FRACTION,
    camera_rays,
    render,
    sphere_trace,
)
from lipsdf_blender.worker import protocol as P
from lipsdf_blender.worker.client import JobCancelledError, WorkerError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def centres(plane, w, h):
    """Pixel centres written out independently of the core: (h, w, 3), row 0 at the bottom."""
    out = np.empty((h, w, 3))
    for i in range(h):
        for j in range(w):
            u, v = -1 + (2 * j + 1) / w, -1 + (2 * i + 1) / h
            out[i, j] = (plane @ np.array([u, v, 0.0, 1.0]))[:3]
    return out


def translate(x=0.0, y=0.0, z=0.0, scale=1.0):
    M = np.diag([scale, scale, scale, 1.0])
    M[:3, 3] = (x, y, z)
    return M


def persp_camera(eye_z=4.0, pixels=(96, 72), fov=0.7):
    return {"matrix": translate(z=eye_z), "type": "persp", "fov": fov, "pixels": list(pixels),
            "clip": [0.1, 100.0]}  # fmt: skip


def ortho_camera(eye_z=4.0, pixels=(80, 64), scale=3.0, M=None):
    M = translate(z=eye_z) if M is None else M
    return {"matrix": M, "type": "ortho", "ortho_scale": scale, "pixels": list(pixels),
            "clip": [0.0, 100.0]}  # fmt: skip


def ray_sphere(O, D, c, r):
    """Analytic first hit distance of unit rays with a sphere (inf: missed)."""
    oc = O - c
    b = np.einsum("ij,ij->i", oc, D)
    disc = b * b - (np.einsum("ij,ij->i", oc, oc) - r * r)
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    return np.where(disc >= 0, t, np.inf)


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


# -- slices ---------------------------------------------------------------------------------


def test_slice_of_exact_sphere_matches_analytic_distance_and_signs():
    c, r, spacing = np.array([0.1, -0.05, 0.0]), 0.7, 0.2
    plane = translate(z=0.2)
    plane[0, 0], plane[1, 1] = 1.2, 0.9  # 80 x 60 square pixels of 0.03
    w, h = 80, 60
    pic = slice_image(SphereField(c, r), plane, (w, h), spacing)
    X = centres(plane, w, h)
    d = np.linalg.norm(X - c, axis=2) - r
    assert pic["distance"].shape == (h, w) and pic["rgba"].shape == (h, w, 4)
    assert pic["rgba"].dtype == np.float32 and pic["rgba_gradient"].dtype == np.float32
    np.testing.assert_allclose(pic["distance"], d, atol=1e-5)
    np.testing.assert_allclose(pic["gradient_norm"], 1.0, atol=1e-4)
    assert pic["min"] == pytest.approx(d.min(), abs=1e-5)
    assert pic["max"] == pytest.approx(d.max(), abs=1e-5)
    assert pic["gradient_max"] <= 1 + 1e-4

    lines, rgba = pic["lines"], pic["rgba"]
    plain = lines == 0
    inside, outside = plain & (d < 0), plain & (d > 0)
    assert inside.sum() > 500 and outside.sum() > 500
    assert (rgba[..., 2] > rgba[..., 0])[inside].all()  # blue inside
    assert (rgba[..., 0] > rgba[..., 2])[outside].all()  # orange outside
    assert (rgba[..., 3] == 1).all()
    # The zero line is white and hugs the circle (two pixels wide at most).
    pixel, slope = 0.03, np.hypot(*np.gradient(d, 0.03))
    zero = lines == 2
    assert np.all(rgba[zero][:, :3] == 1.0)
    assert np.all(np.abs(d[zero]) <= 1.01 * pixel)
    # Isolines: about one pixel wide, where the distance is a multiple of the spacing.
    iso = lines == 1
    off = np.abs(d - spacing * np.round(d / spacing))
    assert iso.sum() > 50 and np.all(off[iso] <= 0.51 * pixel)
    # Every pixel closer to a line than a quarter of its change across a pixel is marked.
    sure = (off < 0.25 * pixel * slope) & (np.abs(d) > 1.2 * pixel)
    assert sure.any() and np.all(iso[sure])
    # The gradient picture: |grad f| = 1 everywhere, no violation (no pure red).
    g = pic["rgba_gradient"]
    assert not np.any((g[..., 0] == 1) & (g[..., 1] == 0) & (g[..., 2] == 0))


def test_slice_plane_placement_and_row_order():
    # The plane's local x runs along world +y, local y along world -x; it sits at x = 0.5.
    plane = np.eye(4)
    plane[:3, 0], plane[:3, 1], plane[:3, 2] = (0, 2, 0), (-2, 0, 0), (0, 0, 2)
    plane[:3, 3] = (0.5, 0.2, 0.3)
    c = np.array([0.5 + 1.1, 0.2 - 0.66, 0.3])  # local (u, v) = (-0.33, -0.55): bottom left
    w, h = 40, 50
    pic = slice_image(SphereField(c, 0.2), plane, (w, h))
    i, j = np.unravel_index(np.argmin(pic["distance"]), (h, w))
    u, v = (c - plane[:3, 3]) @ plane[:3, 0] / 4, (c - plane[:3, 3]) @ plane[:3, 1] / 4
    assert (u, v) == pytest.approx((-0.33, -0.55))
    assert j == math.floor((u + 1) / 2 * w) and i == math.floor((v + 1) / 2 * h)
    assert i < h // 2  # row 0 is the bottom
    np.testing.assert_allclose(
        pic["distance"], np.linalg.norm(centres(plane, w, h) - c, axis=2) - 0.2, atol=1e-5
    )


def test_slice_bad_input():
    with pytest.raises(BadInputError):
        slice_image(SphereField(), np.eye(3), (4, 4))
    with pytest.raises(BadInputError):
        slice_image(SphereField(), np.eye(4), (0, 4))
    with pytest.raises(BadInputError):
        slice_image(SphereField(), np.eye(4), (4, 4), spacing=-1.0)
    with pytest.raises(CancelledError):
        slice_image(SphereField(), np.eye(4), (4, 4), cancel=lambda: True)


def test_slice_of_trained_sphere(sphere_field):
    plane = translate(z=0.1, scale=1.1)
    w = h = 96
    spacing = 0.15
    pic = slice_image(sphere_field, plane, (w, h), spacing)
    pixel = 2.2 / w
    d = np.linalg.norm(centres(plane, w, h), axis=2) - SPHERE_RADIUS
    # The Lipschitz bound holds on every pixel, and the gradient picture shows no red.
    assert pic["gradient_norm"].max() <= 1 + 1e-4
    assert pic["gradient_max"] == pytest.approx(pic["gradient_norm"].max())
    # Signs and colours right away from the surface.
    far = np.abs(d) > 0.03
    assert np.all(np.sign(pic["distance"][far]) == np.sign(d[far]))
    rgba, plain = pic["rgba"], pic["lines"] == 0
    assert (rgba[..., 2] > rgba[..., 0])[plain & far & (d < 0)].all()
    assert (rgba[..., 0] > rgba[..., 2])[plain & far & (d > 0)].all()
    # Isolines are drawn where the field's own value is within half a pixel's change of a
    # multiple of the spacing (the field's slope is at most 1).
    f, lines = pic["distance"], pic["lines"]
    iso = lines == 1
    assert np.all(np.abs(f - spacing * np.round(f / spacing))[iso] <= 0.5 * pixel + 1e-9)
    # They appear at the right radii: the first ring on each side lies within about a pixel
    # of its analytic radius (the median; two at most: the band is half a pixel either side
    # and the tiny field's own error there is ~0.015 = 0.7 pixel). Farther out a 1-Lipschitz
    # fit underestimates distances more, so the outer rings only have to keep their order.
    k = np.round(d / spacing)
    off = np.abs(d - spacing * k)
    for ring in (-1, 1):
        m = iso & (k == ring)
        assert m.sum() > 50 and np.median(off[m]) <= pixel and off[m].max() <= 2 * pixel
    radii = [np.median(d[iso & (k == ring)]) for ring in (-2, -1, 1, 2, 3)]
    assert np.all(np.diff(radii) > 0.5 * spacing)
    zero = lines == 2
    assert zero.sum() > 100 and np.all(np.abs(d[zero]) <= 1.5 * pixel)


# -- sphere tracing -------------------------------------------------------------------------


@pytest.mark.parametrize("camera", [persp_camera(), ortho_camera()], ids=["persp", "ortho"])
def test_trace_exact_sphere_silhouette_and_depth(camera):
    c, r = np.array([0.2, -0.1, 0.0]), 0.9
    field = SphereField(c, r)
    out = render(field, camera)
    w, h = camera["pixels"]
    O, D = camera_rays(camera)
    t_true = ray_sphere(O, D, c, r).reshape(h, w)
    hit, true = np.isfinite(out["depth"]), np.isfinite(t_true)
    assert out["rgba"].shape == (h, w, 4) and out["depth"].shape == (h, w)
    assert iou(hit, true) >= 0.99
    assert out["info"]["hits"] == hit.sum() and out["info"]["steps_max"] <= 256
    assert np.all(out["rgba"][hit][:, 3] == 1) and np.all(out["rgba"][~hit] == 0)
    # Depth within the hit threshold (the march never passes the surface: t <= t_true).
    both = hit & true
    diag = np.linalg.norm(np.full(3, 2 * r))
    footprint = 2 * math.tan(0.35) / w * 5 if camera["type"] == "persp" else 3 / w
    eps = EPS_FRACTION * diag * (1 + 2 * BOX_MARGIN) + FOOTPRINT_FRACTION * footprint
    err = out["depth"][both] - t_true[both]
    assert np.all(err <= 1e-5)
    # A distance bound hit lies at most eps from the surface; along the ray that is eps /
    # cos(incidence), so the check is on the points' distance to the sphere.
    X = O.reshape(h, w, 3)[both] + out["depth"][both][:, None] * D.reshape(h, w, 3)[both]
    assert np.all(np.abs(np.linalg.norm(X - c, axis=1) - r) <= eps)
    # Lit faces are brighter towards the key light (up-left): left-top beats right-bottom.
    grey = out["rgba"][..., 0]
    rows, cols = np.nonzero(hit)
    assert (
        grey[hit][(rows > rows.mean()) & (cols < cols.mean())].mean()
        > grey[hit][(rows < rows.mean()) & (cols > cols.mean())].mean()
    )


def test_trace_never_passes_the_front_surface():
    front, back = SphereField((0, 0, 0.5), 0.5), SphereField((0.1, 0, -2.0), 0.3)
    field = Union(front, back)  # every ray through the back sphere meets the front one first
    O, D = camera_rays(persp_camera(eye_z=5.0, pixels=(64, 64), fov=0.5))
    t, hit, steps = sphere_trace(field, O, D, 0.0, 100.0)
    assert hit.sum() > 200
    X = O[hit] + t[hit, None] * D[hit]
    assert np.all(np.abs(np.linalg.norm(X - front.center, axis=1) - 0.5) < 1e-3)
    assert np.all(t[hit] <= ray_sphere(O[hit], D[hit], front.center, 0.5) + 1e-5)


def test_trace_misses_grazing_and_outside_rays():
    field = SphereField((0, 0, 0), 1.0)
    O = np.array([[0.9, 0.9, 5.0], [3.0, 0.0, 5.0], [0.0, 0.0, 5.0], [0.999, 0, 5.0]])
    D = np.array([[0, 0, -1.0]] * 4)
    t, hit, steps = sphere_trace(field, O, D, 0.0, 100.0)
    assert not hit[0] and steps[0] > 0  # enters the box, misses the sphere
    assert not hit[1] and steps[1] == 0 and t[1] == np.inf  # misses the box: no evaluation
    assert hit[2] and t[2] == pytest.approx(4.0, abs=1e-4)
    assert hit[3]  # grazing but hitting
    # The far clip ends a ray before the surface.
    t, hit, _ = sphere_trace(field, O[2:3], D[2:3], 0.0, 3.5)
    assert not hit[0]


def rasterise(V, F, camera):
    """Pixel coverage of a triangle mesh seen by a camera (row 0 at the bottom)."""
    M = np.asarray(camera["matrix"], dtype=np.float64)
    w, h = camera["pixels"]
    local = (V - M[:3, 3]) @ M[:3, :3]  # camera axes are orthonormal here
    if camera["type"] == "persp":
        half = math.tan(camera["fov"] / 2)
        u = local[:, 0] / (-local[:, 2] * half)
        v = local[:, 1] / (-local[:, 2] * half)
    else:
        u, v = local[:, 0] / (camera["ortho_scale"] / 2), local[:, 1] / (camera["ortho_scale"] / 2)
    px, py = (u + 1) / 2 * w, (v * w / h + 1) / 2 * h  # pixel units, centres at k + 0.5
    cover = np.zeros((h, w), dtype=bool)
    for a, b, c in F:
        xs, ys = px[[a, b, c]], py[[a, b, c]]
        j0, j1 = max(int(np.floor(xs.min() - 0.5)), 0), min(int(np.ceil(xs.max() - 0.5)), w - 1)
        i0, i1 = max(int(np.floor(ys.min() - 0.5)), 0), min(int(np.ceil(ys.max() - 0.5)), h - 1)
        if j0 > j1 or i0 > i1:
            continue
        J, I = np.meshgrid(np.arange(j0, j1 + 1) + 0.5, np.arange(i0, i1 + 1) + 0.5)
        det = (ys[1] - ys[2]) * (xs[0] - xs[2]) + (xs[2] - xs[1]) * (ys[0] - ys[2])
        if det == 0:
            continue
        l0 = ((ys[1] - ys[2]) * (J - xs[2]) + (xs[2] - xs[1]) * (I - ys[2])) / det
        l1 = ((ys[2] - ys[0]) * (J - xs[2]) + (xs[0] - xs[2]) * (I - ys[2])) / det
        inside = (l0 >= 0) & (l1 >= 0) & (1 - l0 - l1 >= 0)
        cover[i0 : i1 + 1, j0 : j1 + 1] |= inside
    return cover


def test_trace_trained_sphere_matches_raster_of_its_remesh(sphere_field):
    M = np.eye(4)
    # Looking from +x+y+z at the origin.
    back = np.array([1.0, 0.8, 0.6]) / np.linalg.norm([1.0, 0.8, 0.6])
    right = np.cross([0, 0, 1.0], back)
    right /= np.linalg.norm(right)
    M[:3, 0], M[:3, 1], M[:3, 2], M[:3, 3] = right, np.cross(back, right), back, 3.0 * back
    camera = {"matrix": M, "type": "persp", "fov": 0.8, "pixels": [72, 64], "clip": [0.1, 10.0]}
    out = render(sphere_field, camera)
    mesh = remesh(sphere_field, 64)
    cover = rasterise(mesh.vertices, mesh.faces, camera)
    hit = np.isfinite(out["depth"])
    assert cover.sum() > 500
    assert iou(hit, cover) >= 0.98


def test_trace_csg_union_of_transformed_spheres():
    ball = SphereField((0, 0, 0), 1.0)
    mats = [translate(-0.7, 0.1, 0.0, scale=0.5), translate(0.6, -0.2, 0.3, scale=0.7)]
    field = combine("union", [ball, ball], matrices=mats)
    camera = ortho_camera(pixels=(90, 60), scale=3.0)
    out = render(field, camera)
    O, _ = camera_rays(camera)
    discs = np.zeros(len(O), dtype=bool)
    for m in mats:
        discs |= np.linalg.norm(O[:, :2] - m[:2, 3], axis=1) <= m[0, 0]
    hit = np.isfinite(out["depth"]).reshape(-1)
    assert iou(hit, discs) >= 0.99


def test_camera_bad_input():
    for bad in (
        dict(persp_camera(), fov=0.0),
        dict(persp_camera(), clip=[2.0, 1.0]),
        dict(persp_camera(), matrix=np.eye(3)),
        dict(ortho_camera(), ortho_scale=-1.0),
        dict(persp_camera(), type="fisheye"),
    ):
        with pytest.raises(BadInputError):
            render(SphereField(), bad)


# -- worker ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ball_dir(sphere_field, tmp_path_factory):
    d = tmp_path_factory.mktemp("picture")
    sphere_field.save(d / "ball.lipsdf")
    return d


def test_worker_slice(client, ball_dir):
    plane = translate(z=0.0, scale=1.2)
    M = translate(0.5, 0.0, 0.0, scale=2.0)  # the ball in the world: radius 1.6 at x = 0.5
    plane[:3, 3] = (0.5, 0.0, 0.0)
    plane[:3, :3] *= 2.0
    params = {"field": "ball.lipsdf", "matrix": M.tolist(), "plane": plane.tolist(),
              "pixels": [64, 48], "spacing": 0.5}  # fmt: skip
    res = client.run(P.SLICE, params, job_dir=ball_dir)
    a = P.load_arrays(res["files"]["image"])
    assert set(a) == {"distance", "gradient_norm", "rgba", "rgba_gradient"}
    assert a["distance"].shape == a["gradient_norm"].shape == (48, 64)
    assert a["rgba"].shape == a["rgba_gradient"].shape == (48, 64, 4)
    assert a["rgba"].dtype == np.float32
    d = np.linalg.norm(centres(plane, 64, 48) - M[:3, 3], axis=2) - 2 * SPHERE_RADIUS
    far = np.abs(d) > 0.1
    assert np.all(np.sign(a["distance"][far]) == np.sign(d[far]))  # world units, world place
    assert a["gradient_norm"].max() <= 1 + 1e-4
    info = res["info"]
    assert info["min"] == pytest.approx(a["distance"].min())
    assert info["max"] == pytest.approx(a["distance"].max())
    assert info["gradient_max"] == pytest.approx(a["gradient_norm"].max())


def test_worker_render_and_bad_cameras(client, ball_dir):
    camera = persp_camera(eye_z=3.0, pixels=(48, 40), fov=0.9)
    mats = [translate(-0.5, 0, 0, 0.5).tolist(), translate(0.5, 0, 0, 0.5).tolist()]
    params = {"fields": ["ball.lipsdf", "ball.lipsdf"], "matrices": mats, "op": "union",
              "blend": 0.0, "camera": {**camera, "matrix": camera["matrix"].tolist()}}  # fmt: skip
    seen = []
    res = client.run(P.RENDER, params, job_dir=ball_dir, on_progress=seen.append)
    a = P.load_arrays(res["files"]["image"])
    assert set(a) == {"rgba", "depth"}
    assert a["rgba"].shape == (40, 48, 4) and a["depth"].shape == (40, 48)
    O, D = camera_rays(camera)
    r = 0.5 * SPHERE_RADIUS
    true = np.isfinite(ray_sphere(O, D, np.array([-0.5, 0, 0]), r)) | np.isfinite(
        ray_sphere(O, D, np.array([0.5, 0, 0]), r)
    )
    hit = np.isfinite(a["depth"]).reshape(-1)
    assert iou(hit, true) >= 0.95  # ~290 pixels; the trained radius is within about 1 %
    assert np.array_equal(a["rgba"][..., 3].reshape(-1) == 1, hit)
    info = res["info"]
    assert info["hits"] == hit.sum() and info["steps_max"] >= info["steps_mean"] > 0
    assert info["seconds"] > 0
    assert any(m.get("phase") == "trace" for m in seen)

    good = params["camera"]
    for bad in (
        dict(good, fov=0),
        dict(good, clip=[1.0, 1.0]),
        dict(good, matrix=np.eye(3).tolist()),
        dict(good, pixels=[0, 10]),
        dict(good, type="ortho"),  # no ortho_scale
        {k: v for k, v in good.items() if k != "clip"},
    ):
        with pytest.raises(WorkerError) as err:
            client.run(P.RENDER, dict(params, camera=bad), job_dir=ball_dir)
        assert err.value.kind == P.BAD_INPUT


def test_worker_render_cancel(client, ball_dir):
    camera = persp_camera(eye_z=3.0, pixels=[1024, 1024], fov=0.9)
    params = {"fields": ["ball.lipsdf"], "camera": {**camera, "matrix": camera["matrix"].tolist()}}
    job = client.submit(P.RENDER, params, job_dir=ball_dir)
    deadline = time.monotonic() + 60
    started = False
    while not started and time.monotonic() < deadline:
        for m in client.poll():
            assert not (m.get("id") == job and m["type"] in P.FINAL), m
            # Cancel while marching (step 1 done): a cancel check runs every batch of rays.
            started |= m.get("id") == job and m.get("phase") == "trace" and m["step"] >= 1
        time.sleep(0.02)
    assert started
    t0 = time.monotonic()
    client.cancel(job)
    with pytest.raises(JobCancelledError):
        client.wait(job, timeout=30)
    assert time.monotonic() - t0 < 5.0


# -- command line ---------------------------------------------------------------------------


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "lipsdf_blender", *map(str, args)],
                       capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


def test_cli_slice_and_render(ball_dir, tmp_path):
    import matplotlib.image as mpimg

    field = ball_dir / "ball.lipsdf"
    out = cli("slice", field, "--axis", "y", "--at", "0.1", "--pixels", "64", "--spacing", "0.2",
              "-o", tmp_path / "slice.png")  # fmt: skip
    assert "largest |grad f|" in out
    img = mpimg.imread(tmp_path / "slice.png")
    grad = mpimg.imread(tmp_path / "slice_gradient.png")
    assert img.shape[:2] == grad.shape[:2] and max(img.shape[:2]) == 64
    assert abs(img.shape[0] - img.shape[1]) <= 2  # the sphere's bounds are about square
    # PNG rows run top down: the centre is inside (blue), a corner outside (orange).
    mid = img[img.shape[0] // 2, img.shape[1] // 2]
    corner = img[1, 1]
    assert mid[2] > mid[0] and corner[0] > corner[2]

    out = cli("render", field, field, "--op", "union", "--pixels", "48", "--azimuth", "20",
              "-o", tmp_path / "preview.png")  # fmt: skip
    assert "s per frame" in out
    img = mpimg.imread(tmp_path / "preview.png")
    assert img.shape == (48, 48, 4)
    alpha = img[..., 3] > 0.5
    assert alpha[24, 24] and not alpha[0, 0] and 0.1 < alpha.mean() < 0.9
