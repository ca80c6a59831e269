"""Point clouds made from reference meshes for bench_clouds.py (issue 10), with a fixed seed.

Every cloud starts from area-uniform samples of a closed (or nearly closed) reference mesh
with the mesh's true outward normals (``core.surfaces.metrics.oriented_samples``); the variants then
drop the normals, add noise, thin the points, hide part of the shape, scan it from a few
cameras, or add outliers. Distances are in % of the mesh's bounding-box diagonal.

=================  ==========================================================================
cloud              what
=================  ==========================================================================
clean_normals      ``n`` samples with their true outward normals
clean              the same points without normals
noise0.25/0.5/1    the clean points moved by Gaussian noise, sigma 0.25 / 0.5 / 1 % of the
                   diagonal along each axis
sparse2000/500     2,000 / 500 samples
partial_bottom     ``n`` samples of the mesh above its lowest 15 % along the up axis
partial_side       ``n`` samples of the mesh outside its last 15 % along +x
scan_views         first hits of rays from 5 cameras (4 around at 20 degrees elevation, one
                   at 60, none below), ``n`` of them, noise 0.1 % of the diagonal
outliers1/5        the clean points plus 1 % / 5 % as many uniform points in the mesh's
                   bounding box grown by 10 % of its size on every side
=================  ==========================================================================

Only ``clean_normals`` has normals. ``python benchmarks/cloud_inputs.py --out DIR`` writes them
all as PLY files.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import MESH_DIR  # noqa: E402
from peer_shapes import l_bracket, thin_fin  # noqa: E402
from scan_data import data_path  # noqa: E402

from lipsdf_blender.core.formats.files import load_geometry, save_points  # noqa: E402
from lipsdf_blender.core.surfaces.metrics import grown_box, oriented_samples  # noqa: E402


def fetched(name: str):
    """A loader of the closed mesh ``name`` from scan_data.py's cache (fetched once)."""

    def load():
        g = load_geometry(data_path(name))
        return g.vertices, g.faces

    return load


#: name -> (where the mesh comes from, up axis: 0 x, 1 y, 2 z). The shared OBJ files are
#: y-up; the shapes made in code are z-up. The bunny has holes in its base: its reference is
#: the mesh itself, as in the mesh benchmark. The last four (issue 23) are closed public
#: models from alecjacobson/common-3d-test-models, fetched by ``scan_data.py --fetch``.
REFERENCES = {
    "spot": ("spot.obj", 1),
    "fandisk": ("fandisk.obj", 1),
    "stanford-bunny": ("stanford-bunny.obj", 1),
    "thin-fin": (thin_fin, 2),  # a wall 1 % of the block's size
    "l-bracket": (l_bracket, 2),  # two plates 0.25 thick
    "cheburashka": (fetched("cheburashka.obj"), 1),
    "homer": (fetched("homer.obj"), 1),
    "rocker-arm": (fetched("rocker-arm.obj"), 2),  # a CAD part with a hole through it
    "cow": (fetched("cow.obj"), 1),
}

#: cloud name -> its recipe (see the module's docstring)
CLOUDS = {
    "clean_normals": {"normals": True},
    "clean": {},
    "noise0.25": {"noise": 0.25},
    "noise0.5": {"noise": 0.5},
    "noise1": {"noise": 1.0},
    "sparse2000": {"points": 2000},
    "sparse500": {"points": 500},
    "partial_bottom": {"hide": ("up", -1, 0.15)},
    "partial_side": {"hide": (0, +1, 0.15)},
    "scan_views": {"scan": True, "noise": 0.1},
    "outliers1": {"outliers": 0.01},
    "outliers5": {"outliers": 0.05},
}

#: scanner cameras as (azimuth, elevation) in degrees about the up axis: around and above
CAMERAS = ((45.0, 20.0), (135.0, 20.0), (225.0, 20.0), (315.0, 20.0), (0.0, 60.0))


def load_reference(name: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The reference mesh ``V (n,3), F (m,3)`` and its up axis."""
    source, up = REFERENCES[name]
    if callable(source):
        V, F = source()
    else:
        g = load_geometry(MESH_DIR / source)
        V, F = g.vertices, g.faces
    return np.asarray(V, dtype=np.float64), np.asarray(F, dtype=np.int64), up


def diagonal(V) -> float:
    V = np.asarray(V, dtype=np.float64)
    return float(np.linalg.norm(V.max(axis=0) - V.min(axis=0)))


def add_noise(P, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``P (n,3)`` moved by isotropic Gaussian noise of standard deviation ``sigma`` (units of
    ``P``) along each axis."""
    P = np.asarray(P, dtype=np.float64)
    return P + rng.normal(scale=sigma, size=P.shape)


def add_outliers(P, fraction: float, lo, hi, rng: np.random.Generator) -> np.ndarray:
    """``P (n,3)`` followed by ``round(fraction * n)`` points uniform in the box ``lo, hi``."""
    P = np.asarray(P, dtype=np.float64)
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    k = int(round(fraction * len(P)))
    return np.vstack([P, lo + rng.random((k, 3)) * (hi - lo)])


def visible_part(V, F, axis: int, sign: int, fraction: float, n: int, seed: int = 0):
    """``n`` area-uniform samples (and outward normals) of the mesh outside the slab of
    ``fraction`` of its extent along ``axis`` at its ``sign`` end (-1: the lowest part).

    Returns
    -------
    P, N : (n, 3) float64
    """
    lo, hi = V[:, axis].min(), V[:, axis].max()
    cut = lo + fraction * (hi - lo) if sign < 0 else hi - fraction * (hi - lo)

    def seen(P):
        return P[:, axis] >= cut if sign < 0 else P[:, axis] <= cut

    m = n
    for _ in range(8):  # the seen share of the area is unknown up front: sample more until n
        P, N, _ = oriented_samples(V, F, m, seed)
        keep = seen(P)
        if keep.sum() >= n:
            idx = np.flatnonzero(keep)[:n]
            return P[idx], N[idx]
        m = int(math.ceil(1.1 * m * n / max(keep.sum(), 1))) + 100
    raise ValueError("visible_part: the slab holds (almost) the whole surface")


def camera_positions(V, up: int, cameras=CAMERAS, distance: float = 2.0) -> np.ndarray:
    """Camera centres ``(k,3)`` at ``distance`` diagonals from the mesh's box centre, from
    ``(azimuth, elevation)`` pairs in degrees about the ``up`` axis."""
    lo, hi = V.min(axis=0), V.max(axis=0)
    centre = (lo + hi) / 2
    a, b = (up + 1) % 3, (up + 2) % 3
    out = []
    for az, el in cameras:
        az, el = math.radians(az), math.radians(el)
        d = np.zeros(3)
        d[a], d[b], d[up] = math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)
        out.append(centre + distance * diagonal(V) * d)
    return np.array(out)


def _first_hits(V, F, eye, pixels: int) -> np.ndarray:
    """First hits of a ``pixels x pixels`` pinhole camera at ``eye`` aimed at the box centre,
    its view just covering the box's bounding sphere."""
    import open3d as o3d

    centre = (V.min(axis=0) + V.max(axis=0)) / 2
    forward = centre - eye
    dist = float(np.linalg.norm(forward))
    forward /= dist
    helper = np.eye(3)[np.argmin(np.abs(forward))]
    right = np.cross(forward, helper)
    right /= np.linalg.norm(right)
    upv = np.cross(right, forward)
    half = math.tan(math.asin(min(0.5 * diagonal(V) / dist, 0.99)))
    s = np.linspace(-half, half, pixels)
    u, v = np.meshgrid(s, s, indexing="ij")
    D = forward + u.reshape(-1, 1) * right + v.reshape(-1, 1) * upv
    D /= np.linalg.norm(D, axis=1, keepdims=True)
    rays = np.hstack([np.broadcast_to(eye, D.shape), D]).astype(np.float32)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.ascontiguousarray(V, dtype=np.float32)),
        o3d.core.Tensor(np.ascontiguousarray(F, dtype=np.uint32)),
    )
    t = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy().astype(np.float64)
    hit = np.isfinite(t)
    return eye + t[hit, None] * D[hit]


def scan(V, F, eyes, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` points a scanner at each of ``eyes (k,3)`` would see: first hits of rays on the
    mesh (the rays of all cameras together, drawn down to ``n`` at random), no noise.

    Returns
    -------
    (n, 3) float64
    """
    V = np.asarray(V, dtype=np.float64)
    pixels = int(math.ceil(math.sqrt(3.0 * n / len(eyes))))
    for _ in range(6):
        P = np.vstack([_first_hits(V, F, e, pixels) for e in eyes])
        if len(P) >= n:
            return P[np.sort(rng.choice(len(P), n, replace=False))]
        pixels = int(math.ceil(1.2 * pixels * math.sqrt(n / max(len(P), 1))))
    raise ValueError("scan: the cameras see too little of the mesh")


def make_cloud(V, F, cloud: str, n: int = 100_000, seed: int = 0, up: int = 1):
    """The cloud ``cloud`` (a key of :data:`CLOUDS`) of the mesh ``V, F``.

    Parameters
    ----------
    V, F : (n, 3) float, (m, 3) int
        The reference mesh.
    cloud : str
    n : int
        Points before outliers (the sparse clouds have their own count).
    seed : int
        ``numpy.random.default_rng(seed)`` for everything random; the same seed gives the same
        clean points under every variant.
    up : int
        The up axis (0, 1, 2) for ``partial_bottom`` and the scanner's cameras.

    Returns
    -------
    P : (k, 3) float64
    N : (k, 3) float64 or None
        Outward unit normals, for ``clean_normals`` only.
    """
    V, F = np.asarray(V, dtype=np.float64), np.asarray(F, dtype=np.int64)
    recipe = CLOUDS[cloud]
    rng = np.random.default_rng(seed)
    diag = diagonal(V)
    if "hide" in recipe:
        axis, sign, fraction = recipe["hide"]
        P, N = visible_part(V, F, up if axis == "up" else axis, sign, fraction, n, seed)
    elif recipe.get("scan"):
        P, N = scan(V, F, camera_positions(V, up), n, rng), None
    else:
        P, N, _ = oriented_samples(V, F, recipe.get("points", n), seed)
    if recipe.get("noise"):
        P = add_noise(P, recipe["noise"] / 100.0 * diag, rng)
    if recipe.get("outliers"):
        P = add_outliers(P, recipe["outliers"], *grown_box(V, 0.10), rng)
    return P, (N if recipe.get("normals") else None)


def write_cloud(path: Path, P, N=None) -> Path:
    """The cloud as a binary PLY (``nx ny nz`` only when ``N`` is given)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_points(path, P, N)
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for SHAPE/CLOUD.ply")
    p.add_argument("--shapes", default=",".join(REFERENCES))
    p.add_argument("--clouds", default=",".join(CLOUDS))
    p.add_argument("--points", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for shape in args.shapes.split(","):
        V, F, up = load_reference(shape)
        for cloud in args.clouds.split(","):
            P, N = make_cloud(V, F, cloud, args.points, args.seed, up)
            path = write_cloud(args.out / shape / f"{cloud}.ply", P, N)
            print(f"{path}: {len(P)} points" + (" with normals" if N is not None else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
