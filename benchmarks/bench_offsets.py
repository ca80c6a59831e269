"""Offsets at exact distances: how far from the asked distance to the *input* they lie (issue 9).

Trains a fast field on a mesh (or loads one), offsets it by +-2 % of the diagonal at the preset's
resolution (``surfaces.remesh.offset_surfaces``: the detailed remesh, then the levels of its exact
distance) and measures, on 100k samples of each offset plus its vertices, the signed distance
to the input (exact, libigl; sign by the input's winding number) minus the asked distance, in %
of the diagonal. Prints a table and writes JSON.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_offsets.py ../shared/meshes/spot.obj
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import igl
import numpy as np

from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.formats.files import load_geometry
from lipsdf_blender.core.surfaces import metrics, topology
from lipsdf_blender.core.surfaces.remesh import offset_surfaces
from lipsdf_blender.core.training.train import train_field

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mesh")
    ap.add_argument("--field", default=None, help="a trained .lipsdf for this mesh")
    ap.add_argument("--fraction", type=float, default=0.02, help="offset, share of the diagonal")
    ap.add_argument("--resolution", type=int, default=192)
    ap.add_argument("--json", default=str(PROJECT / "benchmarks" / "results" / "offsets.json"))
    args = ap.parse_args()
    g = load_geometry(args.mesh)
    V, F = g.vertices, g.faces.astype(np.int64)
    diag = float(np.linalg.norm(V.max(0) - V.min(0)))
    field = Field.load(args.field) if args.field else train_field(g, "fast", device="cpu")
    D = [args.fraction * diag, -args.fraction * diag]
    t = time.perf_counter()
    shells = offset_surfaces(field, D, resolution=args.resolution)
    seconds = time.perf_counter() - t
    rows = []
    for d, s in zip(D, shells, strict=True):
        P, _ = metrics.sample_surface(s.vertices, s.faces, 100_000)
        P = np.concatenate([P, s.vertices])
        sd = np.sqrt(igl.point_mesh_squared_distance(P, V, F)[0])
        sd[igl.fast_winding_number(V, F, P) > 0.5] *= -1
        e = 100 * (sd - d) / diag
        rows.append(
            {
                "offset %": round(100 * d / diag, 3),
                "max |err| %": float(np.abs(e).max()),
                "p5 %": float(np.percentile(e, 5)),
                "p95 %": float(np.percentile(e, 95)),
                "watertight": topology.is_watertight(s.faces),
                "parts": topology.connected_components(s.faces),
            }
        )
    print(f"{Path(args.mesh).stem}, resolution {args.resolution}, {seconds:.1f} s for both")
    print("| offset % | max \\|err\\| % | p5 % | p95 % | watertight | parts |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['offset %']:+.1f} | {r['max |err| %']:.3f} | {r['p5 %']:+.3f} | "
            f"{r['p95 %']:+.3f} | {'yes' if r['watertight'] else 'no'} | {r['parts']} |"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"mesh": args.mesh, "seconds": seconds, "rows": rows}))


if __name__ == "__main__":
    main()
