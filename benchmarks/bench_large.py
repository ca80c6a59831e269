"""Large inputs: the fast remesh of meshes and point clouds from 10k to 1M+, and Blender's side.

Inputs, all made from spot (``../shared/meshes/spot.obj``) with a fixed seed:

- meshes: spot split 1-4 times (every triangle into four, same surface): 23k to 1.5M faces;
- clouds: 10k, 100k and 1M points on spot, with their normals and without (estimated).

Each case runs in a fresh process (its peak memory is its own): ``train_field(..., "fast")``
then ``surface.remesh`` at the preset's resolution, as the worker runs a remesh job. Columns:
labelling seconds (for clouds this includes preparing the cloud: outliers, noise, averaging,
normals), of which preparing the cloud; training; extraction; total; peak resident memory
(``VmHWM``); Chamfer distance and Hausdorff to spot (% of the diagonal, ``core.surfaces.metrics``).

``--blender``: in a ``bpy`` process, a 1M-vertex point cloud object and the 1.5M-face mesh
are read as the add-on reads them before a job (``convert.object_source``: evaluated mesh,
``foreach_get``, triangles, normals) and hashed for the stale check
(``plans.common.geometry_hash``).

Run alone on a quiet machine::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_large.py --threads 2 --blender
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_common import write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
SPOT = ROOT.parent / "shared" / "meshes" / "spot.obj"

CASES = [("mesh", s) for s in (1, 2, 3, 4)]
CASES += [("cloud+normals", n) for n in (10_000, 100_000, 1_000_000)]
CASES += [("cloud", n) for n in (10_000, 100_000, 1_000_000)]


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make_input(kind: str, size: int):
    """``(Geometry, label, V_truth, F_truth)`` for one case."""
    import igl

    from lipsdf_blender.core.formats.files import load_geometry
    from lipsdf_blender.core.inputs.geometry import Geometry
    from lipsdf_blender.core.surfaces.metrics import face_normals

    spot = load_geometry(SPOT)
    V, F = spot.vertices, spot.faces
    if kind == "mesh":
        Vs, Fs = V, F
        for _ in range(size):
            Vs, Fs = igl.upsample(Vs, Fs)
        return Geometry.mesh(Vs, Fs), f"{len(Fs):,} faces", V, F
    rng = np.random.default_rng(0)
    FN, area = face_normals(V, F)
    fi = rng.choice(len(F), size, p=area / area.sum())
    u, v = rng.random(size), rng.random(size)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    a, b, c = V[F[fi, 0]], V[F[fi, 1]], V[F[fi, 2]]
    P = a + u[:, None] * (b - a) + v[:, None] * (c - a)
    N = FN[fi] if kind == "cloud+normals" else None
    return Geometry.points(P, N), f"{size:,} points", V, F


def one_case(kind: str, size: int, threads: int) -> dict:
    import torch

    from lipsdf_blender.core.surfaces.metrics import chamfer_hausdorff
    from lipsdf_blender.core.surfaces.remesh import remesh
    from lipsdf_blender.core.training.presets import get_preset
    from lipsdf_blender.core.training.train import train_field

    torch.set_num_threads(threads)
    geom, label, V, F = make_input(kind, size)
    t0 = time.perf_counter()
    field = train_field(geom, "fast", device="cpu", seed=0)
    t1 = time.perf_counter()
    r = remesh(field, get_preset("fast").resolution)
    t2 = time.perf_counter()
    rec = field.record
    cloud = rec.get("cloud") or {}
    m = chamfer_hausdorff(r.vertices, r.faces, V, F)
    diag = float(np.linalg.norm(V.max(0) - V.min(0)))
    return {
        "kind": kind,
        "size": size,
        "label": label,
        "labelling_s": rec["seconds_labelling"],
        "prepare_cloud_s": cloud.get("seconds"),
        "cloud_points_used": cloud.get("used"),
        "training_s": rec["seconds_training"],
        "extraction_s": t2 - t1,
        "total_s": t2 - t0,
        "peak_mib": peak_mib(),
        "faces": int(len(r.faces)),
        "chamfer_pct": 100 * m["chamfer_l1"] / diag,
        "hausdorff_pct": 100 * m["hausdorff"] / diag,
    }


def blender_case() -> dict:
    """Seconds to read a 1M-point cloud and a 1.5M-face mesh as the add-on does (bpy)."""
    import bpy
    import igl

    from lipsdf_blender.blender import convert
    from lipsdf_blender.blender.plans.common import geometry_hash
    from lipsdf_blender.core.formats.files import load_geometry

    out = {"blender": bpy.app.version_string}
    spot = load_geometry(SPOT)
    V, F = spot.vertices, spot.faces
    for _ in range(4):
        V, F = igl.upsample(V, F)
    rng = np.random.default_rng(0)
    P = V[rng.integers(0, len(V), 1_000_000)] + rng.normal(size=(1_000_000, 3)) * 1e-4
    for name, verts, faces in (("cloud", P, None), ("mesh", V, F)):
        me = bpy.data.meshes.new(name)
        me.vertices.add(len(verts))
        me.vertices.foreach_set("co", verts.astype(np.float32).ravel())
        if faces is not None:
            me.loops.add(faces.size)
            me.loops.foreach_set("vertex_index", faces.astype(np.int32).ravel())
            me.polygons.add(len(faces))
            me.polygons.foreach_set("loop_start", np.arange(0, faces.size, 3, dtype=np.int32))
        else:
            n = np.repeat(P[:1] * 0 + [[0.0, 0.0, 1.0]], len(P), 0).astype(np.float32)
            att = me.attributes.new("normal", "FLOAT_VECTOR", "POINT")
            att.data.foreach_set("vector", n.ravel())
        me.update()
        obj = bpy.data.objects.new(name, me)
        bpy.context.scene.collection.objects.link(obj)
        dg = bpy.context.evaluated_depsgraph_get()
        t0 = time.perf_counter()
        src = convert.object_source(obj, dg)
        t1 = time.perf_counter()
        geometry_hash(src.kind, src.arrays)
        t2 = time.perf_counter()
        out[name] = {
            "vertices": len(verts),
            "faces": 0 if faces is None else len(faces),
            "read_s": t1 - t0,
            "hash_s": t2 - t1,
            "total_s": t2 - t0,
        }
    return out


def run_child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--one", *args]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--one" and argv is None:
        if sys.argv[2] == "blender":
            print(json.dumps(blender_case()))
        else:
            print(json.dumps(one_case(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default="", help="e.g. 'cloud+normals:1000000,mesh:4' (default all)")
    p.add_argument("--blender", action="store_true", help="also time Blender's side (bpy)")
    p.add_argument("--json", type=Path, default=OUT / "large.json")
    args = p.parse_args(argv)
    cases = CASES
    if args.cases:
        cases = [(c.split(":")[0], int(c.split(":")[1])) for c in args.cases.split(",")]
    print(f"fast remesh, {args.threads} threads, CPU\n")
    print(
        "| input | size | labelling s | of which cloud prep s | points used | training s "
        "| extraction s | total s | peak MiB | Chamfer % | Hausdorff % |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for kind, size in cases:
        r = run_child([kind, str(size), str(args.threads)])
        rows.append(r)
        prep = "-" if r["prepare_cloud_s"] is None else f"{r['prepare_cloud_s']:.1f}"
        used = "-" if r["cloud_points_used"] is None else f"{r['cloud_points_used']:,}"
        print(
            f"| {kind} | {r['label']} | {r['labelling_s']:.1f} | {prep} | {used} | "
            f"{r['training_s']:.1f} | {r['extraction_s']:.1f} | {r['total_s']:.1f} | "
            f"{r['peak_mib']:.0f} | {r['chamfer_pct']:.3f} | {r['hausdorff_pct']:.2f} |",
            flush=True,
        )
    doc = {"threads": args.threads, "rows": rows}
    if args.blender:
        b = run_child(["blender"])
        doc["blender"] = b
        print(f"\nBlender {b['blender']}: reading an object as the add-on does before a job\n")
        print("| object | vertices | faces | read s | hash s | total s |")
        print("|---|---|---|---|---|---|")
        for name in ("cloud", "mesh"):
            r = b[name]
            print(
                f"| {name} | {r['vertices']:,} | {r['faces']:,} | {r['read_s']:.2f} | "
                f"{r['hash_s']:.2f} | {r['total_s']:.2f} |"
            )
    write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
