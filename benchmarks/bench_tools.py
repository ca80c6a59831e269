"""The field tools on the CPU: seconds for each, and what they measure, on the shared meshes.

For each mesh: a field (fast preset, seed 0), then each tool's core call, timed alone in this
process (the worker adds only file hand-over): the exact surface the tools share (remesh +
``MeshDistance``, cached by the worker), surface points, safe projection, values and gradients
(network and exact), wall thickness at the remesh's vertices, hollow, a 512x512 slice, a
512x512 sphere-traced frame and the narrow band of a grid (exact and network).

Peers in the same run, on the same meshes, with the same metric code, each in its own Blender
process (bpy 5.0.1): Blender's Solidify modifier as a hollowing (its volume and
self-intersections against ours) and Blender 5.0's Mesh to SDF Grid node against our grid.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_tools.py                # spot and fandisk
    PYTHONPATH=. .venv/bin/python benchmarks/bench_tools.py --meshes spot --no-peers
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import MESH_DIR, PROJECT, machine_info, markdown_table, run_job, write_json

from lipsdf_blender.core.fields.query import (
    project_safe,
    sample_surface_points,
    spacing,
    value_and_gradient,
)
from lipsdf_blender.core.formats.files import load_geometry
from lipsdf_blender.core.surfaces import topology
from lipsdf_blender.core.surfaces.mesh_distance import MeshDistance
from lipsdf_blender.core.surfaces.remesh import remesh
from lipsdf_blender.core.tools.grid import narrow_band
from lipsdf_blender.core.tools.printing import hollow, thickness
from lipsdf_blender.core.tools.slicing import slice_image
from lipsdf_blender.core.tools.trace import render
from lipsdf_blender.core.training.presets import get_preset
from lipsdf_blender.core.training.train import train_field

COLUMNS = [
    ("mesh", "mesh", "{}"),
    ("tool", "tool", "{}"),
    ("size", "size", "{}"),
    ("seconds", "seconds", "{:.2f}"),
    ("result", "result", "{}"),
]
PEER_COLUMNS = [
    ("mesh", "mesh", "{}"),
    ("tool", "tool", "{}"),
    ("wall / voxel", "size", "{}"),
    ("seconds", "seconds", "{:.2f}"),
    ("volume", "volume", "{:.5f}"),
    ("watertight", "watertight", "{}"),
    ("self-intersections", "self_intersections", "{}"),
]
PEER_SCRIPT = Path(__file__).with_name("tools_peers_blender.py")


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def camera_for(lo, hi, pixels=(512, 512)) -> dict:
    """A perspective camera looking at the box from the front right, framing it."""
    centre, radius = 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo))
    d = np.array([0.6, -1.0, 0.45])
    d /= np.linalg.norm(d)
    fov = math.radians(40)
    eye = centre + d * radius / math.sin(0.5 * fov) * 1.05
    z = (eye - centre) / np.linalg.norm(eye - centre)  # the camera looks down its -Z
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    M = np.eye(4)
    M[:3, 0], M[:3, 1], M[:3, 2], M[:3, 3] = x, y, z, eye
    return {"matrix": M.tolist(), "type": "persp", "fov": fov, "pixels": list(pixels),
            "clip": [0.01, 100.0]}  # fmt: skip


def bench_mesh(name: str, args) -> tuple[list[dict], dict]:
    geom = load_geometry(MESH_DIR / f"{name}.obj")
    V, F = geom.vertices, geom.faces
    diag = float(np.linalg.norm(V.max(0) - V.min(0)))
    field, t_train = timed(train_field, geom, "fast", device="cpu", seed=0)
    res = get_preset("fast").resolution
    rows = [dict(mesh=name, tool="train (fast)", size=f"{len(F):,} faces", seconds=t_train,
                 result=f"loss {field.record.get('final_loss', 0):.4g}")]  # fmt: skip

    def row(tool, size, seconds, result):
        rows.append(dict(mesh=name, tool=tool, size=size, seconds=seconds, result=result))
        print(f"{name}: {tool} {size}: {seconds:.2f} s: {result}", flush=True)

    surf, t = timed(remesh, field, res)
    exact = MeshDistance(surf.vertices, surf.faces)
    row("exact surface (remesh + tree)", f"{res}^3", t, f"{len(surf.faces):,} faces")

    P, t = timed(sample_surface_points, field, args.points)
    f, _ = value_and_gradient(field, P)  # the normals the worker adds, and the residual
    sp = spacing(P)
    f_max = float(np.abs(f).max())
    row("surface points + normals", f"{args.points:,}", t,
        f"max |f| {f_max / diag:.1e} diag, spacing cv {sp['cv']:.2f}, min/mean "
        f"{sp['min'] / sp['mean']:.2f}")  # fmt: skip

    lo, hi = V.min(0), V.max(0)
    rng = np.random.default_rng(0)
    X = rng.uniform(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo), (args.queries, 3))
    (Q, ok), t = timed(project_safe, field, X)
    resid = np.abs(value_and_gradient(field, Q)[0])
    row(
        "project (safe steps)",
        f"{len(X):,} points",
        t,
        f"{int((~ok).sum())} not converged, max |f| {resid[ok].max() / diag:.1e} diag",
    )

    _, t = timed(value_and_gradient, field, X)
    row("values + gradients (network)", f"{len(X):,} points", t, "")
    _, t = timed(exact, torch.as_tensor(X))
    row("values (exact, remesh)", f"{len(X):,} points", t, "")

    idx = rng.choice(len(surf.vertices), min(args.thickness, len(surf.vertices)), replace=False)
    T, t = timed(thickness, field, surf.vertices[idx], exact=exact)
    finite = T[np.isfinite(T)]
    row(
        "wall thickness (exact)",
        f"{len(idx):,} vertices",
        t,
        f"min {finite.min() / diag:.3%} diag, median {np.median(finite) / diag:.2%} diag",
    )

    gap = 0.005 * diag
    T, t = timed(thickness, field, surf.vertices[idx], exact=exact, gap=gap)
    finite = T[np.isfinite(T)]
    row(
        "wall thickness (exact, gap 0.5 % diag)",
        f"{len(idx):,} vertices",
        t,
        f"min {finite.min() / diag:.3%} diag, median {np.median(finite) / diag:.2%} diag",
    )

    wall = 0.02 * diag
    (HV, HF, info), t = timed(hollow, exact, wall, resolution=res)
    row("hollow", f"wall {wall:.4g}", t,
        f"volume {info['volume']:.5g} of {info['outer_volume']:.5g}, "
        f"watertight {info['watertight']}")  # fmt: skip
    hollow_row = dict(mesh=name, tool="LipSDF hollow", size=f"{wall:.4g}", seconds=t,
                      volume=info["volume"], watertight=bool(info["watertight"]),
                      self_intersections=topology.self_intersections(HV, HF))  # fmt: skip

    c = 0.5 * (lo + hi)
    half = 0.6 * (hi - lo)
    plane = np.diag([half[0], half[1], 1.0, 1.0])
    plane[:3, 3] = c
    s, t = timed(slice_image, field, plane, (512, 512), 0.02 * diag)
    row("slice", "512x512", t, f"max |grad f| {s['gradient_max']:.4f}")

    cam = camera_for(lo, hi)
    out, t = timed(render, field, cam)
    i = out["info"]
    row(
        "sphere-traced frame",
        "512x512",
        t,
        f"{i['hits']:,} hits, {i['steps_mean']:.1f} steps a ray (max {i['steps_max']})",
    )

    voxel = diag / args.voxels
    for kind, target in (("exact", exact), ("network", field)):
        (ijk, vals), t = timed(narrow_band, target, voxel, 3.0)
        row(f"grid narrow band ({kind})", f"voxel diag/{args.voxels}", t, f"{len(vals):,} voxels")
    return rows, {"hollow": hollow_row, "wall": wall, "voxel": voxel, "diag": diag}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--meshes", default="spot,fandisk")
    p.add_argument("--points", type=int, default=5000)
    p.add_argument("--queries", type=int, default=100_000)
    p.add_argument("--thickness", type=int, default=10_000)
    p.add_argument("--voxels", type=int, default=200, help="voxel = diagonal / this")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-peers", action="store_true")
    p.add_argument("--out", default=str(PROJECT / "benchmarks" / "results" / "tools.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows, peers = [], []
    for name in args.meshes.split(","):
        r, extra = bench_mesh(name, args)
        rows += r
        peers.append(extra["hollow"])
        if not args.no_peers:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, str(PEER_SCRIPT), "--mesh", str(MESH_DIR / f"{name}.obj"),
                       "--wall", str(extra["wall"]), "--voxel", str(extra["voxel"]),
                       "--out", tmp]  # fmt: skip
                res = run_job(cmd, timeout=900)
                for peer in res.get("peers", []):
                    peer["mesh"] = name
                    if "V" in peer:
                        V, F = np.load(peer.pop("V")), np.load(peer.pop("F"))
                        peer["self_intersections"] = topology.self_intersections(V, F)
                        peer["watertight"] = bool(topology.is_watertight(F))
                        peer["volume"] = topology.signed_volume(V, F)
                    peers.append(peer)
                if "error" in res:
                    print(f"{name}: Blender peers failed: {res['error']}", file=sys.stderr)
    print(markdown_table(rows, COLUMNS))
    print()
    print(markdown_table(peers, PEER_COLUMNS, error_key="seconds"))
    write_json(Path(args.out), {"machine": machine_info(), "threads": args.threads,
                                "rows": rows, "peers": peers})  # fmt: skip
    print(json.dumps({"written": args.out}))


if __name__ == "__main__":
    main()
