"""Batch throughput: shapes a minute for 1 and 2 local workers and for Ray, same inputs.

Each configuration runs ``python -m lipsdf_blender batch`` on the shared meshes into a fresh
folder (the fast preset, remesh only), timed from the command's start to its end: process
start, torch imports and, for Ray, starting a local cluster are part of a batch's cost. Then
a rerun of the last configuration measures resuming (every shape skipped).

Run alone on a quiet machine (two jobs on 2 cores make torch's threads collapse)::

    PYTHONPATH=.. ../.venv/bin/python bench_batch.py [--preset fast] [--copies 1]

Prints a table and writes ``results/batch.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_core import cpu_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MESHES = ROOT.parent / "shared" / "meshes"
CONFIGS = (
    ("1 local worker (2 threads)", ["--jobs", "1", "--threads", "2"]),
    ("2 local workers (1 thread each)", ["--jobs", "2", "--threads", "1"]),
    ("Ray, local cluster (2 CPUs, 1 a task)", ["--ray", "auto", "--cpus-per-task", "1"]),
)


def run(inputs, out: Path, extra, preset: str, steps=None) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "lipsdf_blender", "batch", *map(str, inputs), "--out", str(out),
           "--preset", preset, "--quiet", *extra]  # fmt: skip
    if steps:
        cmd += ["--steps", str(steps)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), RAY_USAGE_STATS_ENABLED="0")
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode not in (0, 1):
        raise SystemExit(f"batch failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "results.json").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--copies", type=int, default=1, help="each mesh this many times")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    ap.add_argument("--out", default=str(HERE / "results" / "batch.json"))
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lipsdf-bench-batch-"))
    inputs = []
    for m in sorted(MESHES.glob("*.obj")):
        for c in range(args.copies):
            # copies differ by a comment line, so each has its own hash and folder
            p = work / "in" / f"{m.stem}-{c}.obj"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(m.read_bytes() + f"# copy {c}\n".encode())
            inputs.append(p)
    results = []
    for name, extra in CONFIGS:
        work_out = work / "out" / name.replace(" ", "_").replace(",", "")
        wall, doc = run(inputs, work_out, extra, args.preset, args.steps)
        rows = doc["rows"]
        ok = [r for r in rows if r["status"] == "ok"]
        phase = {
            k: round(sum(r[f"seconds_{k}"] or 0 for r in ok), 2)
            for k in ("read", "train", "remesh", "write")
        }
        results.append(
            {
                "config": name,
                "args": extra,
                "shapes": len(rows),
                "ok": len(ok),
                "wall_seconds": round(wall, 2),
                "shapes_per_minute": round(60 * len(ok) / wall, 3),
                "phase_seconds": phase,
                "seconds_per_shape": {Path(r["input"]).stem: r["seconds_total"] for r in ok},
                "faces": {Path(r["input"]).stem: r["faces"] for r in ok},
                # what a task moves: the input's bytes in, the outputs' bytes out
                "bytes_in": {Path(r["input"]).stem: Path(r["input"]).stat().st_size for r in ok},
                "bytes_out": {
                    Path(r["input"]).stem: sum(
                        (work_out / r["folder"] / f).stat().st_size for f in r["outputs"]
                    )
                    for r in ok
                },
                "watertight": all(r["watertight"] for r in ok),
            }
        )
        print(f"{name}: {len(ok)}/{len(rows)} ok in {wall:.1f} s", file=sys.stderr)
    # resuming: the last configuration again, every shape already finished
    last_name, last_extra = CONFIGS[-1]
    wall, doc = run(inputs, work_out, last_extra, args.preset, args.steps)
    resume = {"config": last_name, "wall_seconds": round(wall, 2),
              "skipped": sum(bool(r["skipped"]) for r in doc["rows"])}  # fmt: skip
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()}
    out = {"machine": machine, "preset": args.preset, "inputs": [p.name for p in inputs],
           "results": results, "resume": resume}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"\n{machine['cpu']}, {machine['cores']} cores; preset {args.preset}; "
          f"{len(inputs)} shapes ({', '.join(p.stem for p in inputs)})\n")  # fmt: skip
    print("| configuration | ok | wall s | shapes/min | train s (sum) | remesh s (sum) |")
    print("|---|---|---|---|---|---|")
    for r in results:
        p = r["phase_seconds"]
        print(
            f"| {r['config']} | {r['ok']}/{r['shapes']} | {r['wall_seconds']:.1f} | "
            f"{r['shapes_per_minute']:.2f} | {p['train']:.1f} | {p['remesh']:.1f} |"
        )
    sizes = results[0]
    print("\n| shape | input MB | outputs MB (remesh + field) | seconds (1 worker) |")
    print("|---|---|---|---|")
    for stem in sizes["bytes_in"]:
        print(
            f"| {stem} | {sizes['bytes_in'][stem] / 1e6:.2f} | "
            f"{sizes['bytes_out'][stem] / 1e6:.2f} | {sizes['seconds_per_shape'][stem]:.1f} |"
        )
    print(f"\nrerun ({resume['config']}): {resume['skipped']} skipped in "
          f"{resume['wall_seconds']:.1f} s")  # fmt: skip
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
