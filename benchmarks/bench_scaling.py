"""Scaling: labelling time against the input's size, extraction cost against the resolution.

``--label``: the winding-number labelling of a fixed set of query points (the fast preset's
240k training points) for icospheres of 1k to 1.3M faces, and for point clouds of 1k to 1M
points on a sphere (with normals given, and for up to 100k without: normals estimated).

``--extract FIELD``: extraction of one ``.lipsdf`` field at each ``--resolutions`` value, each in
a fresh process so its peak RSS is its own: seconds, evaluations, % of the dense grid, faces,
achieved network GFLOP/s and peak RSS.

Run (the extraction rows of the benchmarks README: 2 threads, the high preset's spot field)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_scaling.py --extract FIELD.lipsdf \\
        --resolutions 128,256,384,512 --threads 2
    PYTHONPATH=. .venv/bin/python benchmarks/bench_scaling.py --label --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parent / "results"


def one_extraction(path: str, resolution: int, threads: int, device: str) -> dict:
    from lipsdf_blender.core.fields.field import Field
    from lipsdf_blender.core.surfaces.extract import extract

    torch.set_num_threads(threads)
    field = Field.load(path)
    fpp = field.net.depth * 4 * field.net.width**2
    t0 = time.perf_counter()
    r = extract(field, 0.0, resolution=resolution, device=None if device == "cpu" else device)
    s = time.perf_counter() - t0
    return {
        "field": Path(path).name,
        "resolution": resolution,
        "threads": threads,
        "seconds": s,
        "evaluations": r.stats.evaluations,
        "evals_percent": 100.0 * r.stats.evaluations / (resolution + 1) ** 3,
        "faces": len(r.faces),
        "network_gflops": r.stats.evaluations * fpp / s / 1e9,
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def extraction_table(args) -> list[dict]:
    rows = []
    print(
        "| resolution | seconds | evaluations | evals % of (N+1)³ | faces | net GFLOP/s "
        "| peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    for res in args.resolutions:
        cmd = [
            sys.executable,
            __file__,
            "--one",
            args.extract,
            str(res),
            str(args.threads),
            args.device,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        print(
            f"| {res} | {r['seconds']:.1f} | {r['evaluations']:,} | {r['evals_percent']:.2f} | "
            f"{r['faces']:,} | {r['network_gflops']:.0f} | {r['max_rss_mib']:.0f} |",
            flush=True,
        )
    return rows


def sphere_points(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    P = rng.normal(size=(n, 3))
    N = P / np.linalg.norm(P, axis=1, keepdims=True)
    return 0.8 * N, N


def label_table(args) -> list[dict]:
    from lipsdf_blender.core.inputs.geometry import Geometry
    from lipsdf_blender.core.inputs.primitives import icosphere
    from lipsdf_blender.core.training.sampling import WindingNumber

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    Q = rng.uniform(-1.3, 1.3, size=(args.queries, 3))
    rows = []
    print(f"\nlabelling {args.queries:,} query points\n")
    print("| input | size | set-up s | labelling s | µs per query |\n|---|---|---|---|---|")
    cases = [("mesh", s) for s in (3, 4, 5, 6, 7, 8)]
    cases += [("points+normals", n) for n in (1_000, 10_000, 100_000, 1_000_000)]
    cases += [("points", n) for n in (1_000, 10_000, 100_000)]
    for kind, size in cases:
        if kind == "mesh":
            V, F = icosphere(0.8, size)
            geom = Geometry("mesh", V, F)
            label = f"{len(F):,} faces"
        else:
            P, N = sphere_points(size, rng)
            geom = Geometry("points", P, None, N if kind == "points+normals" else None)
            label = f"{size:,} points"
        t0 = time.perf_counter()
        wn = WindingNumber(geom)
        t_setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        w = wn(Q)
        t_label = time.perf_counter() - t0
        inside = np.linalg.norm(Q, axis=1) < 0.8
        err = float(np.mean((w > 0.5) != inside))
        rows.append(
            {
                "kind": kind,
                "size": label,
                "setup_s": t_setup,
                "label_s": t_label,
                "queries": args.queries,
                "mislabelled": err,
            }
        )
        print(
            f"| {kind} | {label} | {t_setup:.2f} | {t_label:.2f} | "
            f"{1e6 * t_label / args.queries:.2f} |",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--one":
        _, _, path, res, threads, device = sys.argv
        print(json.dumps(one_extraction(path, int(res), int(threads), device)))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--extract", metavar="FIELD")
    p.add_argument("--resolutions", default="128,256,384,512")
    p.add_argument("--label", action="store_true")
    p.add_argument("--queries", type=int, default=240_000)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, default=OUT / "scaling.json")
    args = p.parse_args(argv)
    args.resolutions = [int(r) for r in args.resolutions.split(",") if r]
    doc = {"threads": args.threads, "torch": torch.__version__}
    if args.extract:
        doc["extract"] = extraction_table(args)
    if args.label:
        doc["label"] = label_table(args)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
