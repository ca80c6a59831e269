"""Seconds per phase of a remesh, a fresh CLI process per input, next to peers in the same run.

For each input: the wall clock of ``python -m lipsdf_blender remesh IN -o OUT --timings T``
(start to written file, imports included) and the seconds of each phase the CLI recorded
(read, prepare, label, train, detail, extract, write; ``core/phases.py``), then the peers on the
same input (Blender's voxel remesh at 256, MeshFix; ``peer_jobs.py``). Run it alone on a quiet
machine: two jobs on 2 cores make torch's threads collapse.

    PYTHONPATH=. python benchmarks/bench_phases.py [--inputs spot,fandisk] [--peers voxel-256]

Prints a markdown table and writes ``benchmarks/results/phases.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import env, machine_info, markdown_table, tail, write_json  # noqa: E402
from bench_peers import prepare_input, run_peer  # noqa: E402

from lipsdf_blender.core.phases import ORDER  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
INPUTS = ("spot", "fandisk", "suzanne", "stanford-bunny")


def run_ours(inp: dict, preset: str, timeout: float) -> dict:
    out = inp["dir"] / f"ours-{preset}.obj"
    timings = inp["dir"] / f"ours-{preset}.json"
    cmd = [sys.executable, "-m", "lipsdf_blender", "remesh", str(inp["obj"]), "-o", str(out)]
    cmd += ["--preset", preset, "--timings", str(timings)]
    row = {"input": inp["name"], "tool": f"LipSDF {preset}"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=PROJECT, env=env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {**row, "error": f"timed out after {timeout:.0f} s"}
    row["seconds"] = time.perf_counter() - t0
    if proc.returncode != 0:
        return {**row, "error": tail(proc.stderr or proc.stdout)}
    row.update(json.loads(timings.read_text()))
    row["closed"] = "closed input" in proc.stdout
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", default=",".join(INPUTS))
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--peers", default="voxel-256,meshfix", help="comma list; '' for none")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--out", default=str(PROJECT / "benchmarks/results/phases.json"))
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name in filter(None, args.inputs.split(",")):
            inp = prepare_input(name, Path(work))
            rows.append(run_ours(inp, args.preset, args.timeout))
            for peer in filter(None, args.peers.split(",")):
                r = run_peer(inp, peer, args.timeout)
                rows.append(
                    {"input": name, "tool": r["tool"], "seconds": r.get("seconds_wall")}
                    | ({"error": r["error"]} if "error" in r else {})
                )
    columns = [("input", "input", "{}"), ("tool", "tool", "{}"), ("wall s", "seconds", "{:.1f}")]
    columns += [(k, k, "{:.2f}") for k in ORDER]
    print(markdown_table(rows, columns, error_key="seconds"))
    write_json(Path(args.out), {"machine": machine_info(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
