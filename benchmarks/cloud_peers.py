"""The peers of bench_clouds.py, each run in its own process: Open3D and MeshLab (pymeshlab).

    python benchmarks/cloud_peers.py JOB CLOUD.ply OUT.npz [--depth 9] [--k K] [--trim Q]

Jobs:

- ``o3d-poisson``: Open3D's screened Poisson (``create_from_point_cloud_poisson``, depth 9,
  other settings Open3D's defaults). Also writes ``OUT-trimmed.npz``: the same surface without
  the vertices whose density is below the ``--trim`` quantile (default 0.01, the recipe of
  Open3D's own tutorial) and the faces that used them.
- ``ml-poisson``: MeshLab's screened Poisson
  (``generate_surface_reconstruction_screened_poisson``, depth 9, other settings MeshLab's
  defaults). ``OUT-trimmed.npz``: MeshLab's own recipe, the vertices whose quality (the
  density MeshLab's Poisson stores there) is below the ``--trim`` quantile selected with
  ``compute_selection_by_condition_per_vertex`` and removed with
  ``meshing_remove_selected_vertices``.
- ``o3d-bpa``: Open3D's ball pivoting with radii 1, 2 and 4 times the mean distance from a
  point to its nearest neighbour.

Normals: the cloud's own when the PLY has them; otherwise each library's estimate, Open3D's
``estimate_normals`` (k nearest, default 30) and ``orient_normals_consistent_tangent_plane(k)``,
MeshLab's ``compute_normal_for_point_clouds`` (k default 10). A consistent orientation leaves
one global sign open; it is chosen so that most normals point away from the centroid.

``OUT.npz`` gets the result's triangles ``V, F``. The last line printed is ``RESULT {json}``
with ``seconds``: normal estimation and reconstruction (``seconds_trimmed``: plus trimming),
without starting Python, importing the library or reading the file.
These are benchmark-only dependencies (requirements-bench.txt).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

from lipsdf_blender.core.formats.files import load_geometry


def _emit(**result) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def _save(path, V, F) -> None:
    np.savez(path, V=np.asarray(V, dtype=np.float64), F=np.asarray(F, dtype=np.int64))


def trimmed_path(out: str) -> str:
    """Where a job writes its density-trimmed result, beside ``out``."""
    p = Path(out)
    return str(p.with_name(p.stem + "-trimmed" + p.suffix))


def _outward(P, N) -> np.ndarray:
    """``N`` flipped as a whole when most of it points toward the centroid."""
    return -N if np.einsum("ij,ij->i", N, P - P.mean(axis=0)).mean() < 0 else N


# -- Open3D -------------------------------------------------------------------------------------
def _o3d_cloud(P, N, k: int):
    """An Open3D cloud with the given normals, or estimated and oriented ones."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(P))
    if N is not None:
        pcd.normals = o3d.utility.Vector3dVector(N)
        return pcd, "file"
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=k))
    pcd.orient_normals_consistent_tangent_plane(k)
    pcd.normals = o3d.utility.Vector3dVector(_outward(P, np.asarray(pcd.normals)))
    return pcd, "estimated"


def _o3d_arrays(mesh) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(mesh.vertices), np.asarray(mesh.triangles)


def job_o3d_poisson(P, N, out: str, depth: int, k: int, trim: float) -> None:
    import open3d as o3d

    t0 = time.perf_counter()
    pcd, normals = _o3d_cloud(P, N, k)
    mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=depth)
    seconds = time.perf_counter() - t0
    _save(out, *_o3d_arrays(mesh))
    t1 = time.perf_counter()
    density = np.asarray(density)
    mesh.remove_vertices_by_mask(density < np.quantile(density, trim))
    seconds_trimmed = seconds + time.perf_counter() - t1
    _save(trimmed_path(out), *_o3d_arrays(mesh))
    _emit(seconds=seconds, seconds_trimmed=seconds_trimmed, normals=normals, open3d=o3d.__version__)


def job_o3d_bpa(P, N, out: str, k: int) -> None:
    import open3d as o3d

    t0 = time.perf_counter()
    pcd, normals = _o3d_cloud(P, N, k)
    spacing = float(np.mean(pcd.compute_nearest_neighbor_distance()))
    radii = [spacing, 2 * spacing, 4 * spacing]
    mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_ball_pivoting(
        pcd, o3d.utility.DoubleVector(radii)
    )
    seconds = time.perf_counter() - t0
    _save(out, *_o3d_arrays(mesh))
    _emit(seconds=seconds, normals=normals, radii=radii, open3d=o3d.__version__)


# -- MeshLab ------------------------------------------------------------------------------------
def job_ml_poisson(P, N, out: str, depth: int, k: int, trim: float) -> None:
    import pymeshlab as ml

    ms = ml.MeshSet()
    t0 = time.perf_counter()
    if N is not None:
        ms.add_mesh(ml.Mesh(vertex_matrix=P, v_normals_matrix=N))
        normals = "file"
    else:
        ms.add_mesh(ml.Mesh(vertex_matrix=P))
        ms.compute_normal_for_point_clouds(k=k)
        cloud = ms.current_mesh()
        N = _outward(P, cloud.vertex_normal_matrix())
        ms.add_mesh(ml.Mesh(vertex_matrix=P, v_normals_matrix=N))
        normals = "estimated"
    ms.generate_surface_reconstruction_screened_poisson(depth=depth)
    seconds = time.perf_counter() - t0
    mesh = ms.current_mesh()
    _save(out, mesh.vertex_matrix(), mesh.face_matrix())
    t1 = time.perf_counter()
    threshold = float(np.quantile(mesh.vertex_scalar_array(), trim))
    ms.compute_selection_by_condition_per_vertex(condselect=f"(q < {threshold!r})")
    ms.meshing_remove_selected_vertices()
    seconds_trimmed = seconds + time.perf_counter() - t1
    mesh = ms.current_mesh()
    _save(trimmed_path(out), mesh.vertex_matrix(), mesh.face_matrix())
    _emit(
        seconds=seconds,
        seconds_trimmed=seconds_trimmed,
        normals=normals,
        quality_threshold=threshold,
        pymeshlab=version("pymeshlab"),
    )


JOBS = ("o3d-poisson", "ml-poisson", "o3d-bpa")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=JOBS)
    p.add_argument("cloud", help="CLOUD.ply (with nx ny nz when it has normals)")
    p.add_argument("output", help="OUT.npz")
    p.add_argument("--depth", type=int, default=9)
    p.add_argument("--k", type=int, help="neighbours for normals (Open3D 30, MeshLab 10)")
    p.add_argument("--trim", type=float, default=0.01, help="density quantile trimmed away")
    args = p.parse_args(argv)
    g = load_geometry(args.cloud)
    P, N = np.asarray(g.vertices, dtype=np.float64), g.normals
    N = None if N is None else np.asarray(N, dtype=np.float64)
    if args.job == "o3d-poisson":
        job_o3d_poisson(P, N, args.output, args.depth, args.k or 30, args.trim)
    elif args.job == "ml-poisson":
        job_ml_poisson(P, N, args.output, args.depth, args.k or 10, args.trim)
    else:
        job_o3d_bpa(P, N, args.output, args.k or 30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
