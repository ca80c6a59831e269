"""Real scans: LipSDF's remesh of a raw scanner cloud against screened Poisson in the same run
(issue 23).

The scans (``scan_inputs.py``; data fetched once by ``scan_data.py``) have no exact true
surface, so each result is measured two ways (``reports.scan_report``):

- **against the scan itself**: the mean and 95th-percentile distance from every scan point to
  the result, in % of the diagonal (the reference's where there is one, else the scan's);
  closed, parts and self-intersections of the result.
- **against the scanned object's reference**, for the Stanford bunny scans: the Stanford
  reconstruction (``bun_zipper``, the shared ``stanford-bunny.obj``, in the scans' frame; mean
  distance of the raw points to it 0.09 mm, 0.04 % of its diagonal). "The part the scanner
  saw" is the reference surface within 0.5 % of the diagonal (about 2.5 scan-grid steps) of a
  scan point. On it: Chamfer (mean of reference -> result, and result -> reference for the
  result's surface whose nearest reference point is a seen one) and the mean normal error. On
  the whole reference, the unseen side included: Chamfer and IoU, which no tool can get right
  behind the scan but which show blobs and bubbles.

The issue's targets for ours against Open3D's screened Poisson (depth 9): closed, one part;
scan distance at most 1.5 x Poisson's; on the seen part Chamfer and normal error at most
Poisson's; the unseen side closed without flaps or bubbles (the renders, from the scanner's
side and from the back).

Tools: ours (``python -m lipsdf_blender remesh SCAN.ply -o OUT.obj --preset fast``), and the
peers of bench_clouds.py (``cloud_peers.py``; by default Open3D and MeshLab screened Poisson,
depth 9, plain and density-trimmed), normals estimated by each library.

Run from the project root (fetch the data once first)::

    PYTHONPATH=. .venv/bin/python benchmarks/scan_data.py --fetch
    PYTHONPATH=. .venv/bin/python benchmarks/bench_scans.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_scans.py --scans milk --peers o3d-poisson
    PYTHONPATH=. .venv/bin/python benchmarks/bench_scans.py --remeasure   # metrics only

Writes benchmarks/results/scans.json, the scans and results under benchmarks/results/scans/,
and two renders per scan, ``benchmarks/renders/scans/<scan>-front.png`` (from the scanner's
side) and ``-back.png``: scan points | ours | Open3D Poisson | MeshLab Poisson.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_clouds import PEERS, render, results_doc, run_peer, save_doc  # noqa: E402
from bench_common import PROJECT, machine_info, markdown_table  # noqa: E402
from bench_peers import run_ours  # noqa: E402
from cloud_inputs import diagonal  # noqa: E402
from reports import scan_report  # noqa: E402
from scan_data import MissingData  # noqa: E402
from scan_inputs import SCANS, load_scan  # noqa: E402

from lipsdf_blender.core.formats.files import load_geometry, save_points  # noqa: E402

DEFAULT_JSON = PROJECT / "benchmarks" / "results" / "scans.json"
DEFAULT_WORK = PROJECT / "benchmarks" / "results" / "scans"
DEFAULT_RENDERS = PROJECT / "benchmarks" / "renders" / "scans"
#: rendered after the scan's points and ours
RENDERED = ("Open3D Poisson 9", "MeshLab Poisson 9")
#: the part of a reference the scanner saw: within this share of the diagonal of a scan point
SEEN = 0.005
#: the renders' cameras are raised this much above the scanner's (or its opposite) direction
ELEVATION = 0.35

COLUMNS = [
    ("scan", "scan", "{}"),
    ("tool", "tool", "{}"),
    ("seconds", "seconds", "{:.0f}"),
    ("faces", "faces", "{}"),
    ("scan→result mean %", "scan_mean_percent", "{:.4f}"),
    ("p95 %", "scan_p95_percent", "{:.3f}"),
    ("seen %", "seen_percent", "{:.0f}"),
    ("seen Chamfer %", "seen_chamfer_percent", "{:.4f}"),
    ("seen normal°", "seen_normal_deg", "{:.1f}"),
    ("whole Chamfer %", "chamfer_percent", "{:.3f}"),
    ("whole IoU", "iou", "{:.4f}"),
    ("watertight", "watertight", "{}"),
    ("parts", "components", "{}"),
    ("self-int.", "self_intersections", "{}"),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="scans: " + ", ".join(SCANS),
    )
    p.add_argument("--scans", default=",".join(SCANS), help="comma-separated scans")
    p.add_argument("--peers", default="o3d-poisson,ml-poisson", help="of " + ", ".join(PEERS))
    p.add_argument("--preset", default="fast", help="our preset")
    p.add_argument("--device", default="cpu", help="our device")
    p.add_argument("--ours-args", default="", help="more remesh arguments")
    p.add_argument("--samples", type=int, default=100_000, help="reference samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_JSON, help="the JSON file")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="scans and results go here")
    p.add_argument("--renders", default=str(DEFAULT_RENDERS), help="PNG folder ('' skips)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a tool may run")
    p.add_argument(
        "--remeasure", action="store_true", help="only the metrics, on the results in --out"
    )
    args = p.parse_args(argv)
    args.scans = [s.strip() for s in args.scans.split(",") if s.strip()]
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    for name, known in ((args.scans, SCANS), (args.peers, PEERS)):
        if unknown := [s for s in name if s not in known]:
            p.error(f"unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    args.ours = ["--preset", args.preset, "--device", args.device, *shlex.split(args.ours_args)]
    return args


def blender_view(v, lift: float = ELEVATION) -> tuple[float, float, float]:
    """A y-up direction ``v`` raised by ``lift`` toward +y, in Blender's z-up frame (the render
    job turns y-up items the same way: (x, y, z) -> (x, -z, y))."""
    v = np.asarray(v, dtype=np.float64) + np.array([0.0, lift, 0.0])
    return float(v[0]), float(-v[2]), float(v[1])


def run_scan(name: str, args) -> tuple[list[dict], list[str]]:
    """Every tool on one scan: its measured rows, and the renders made."""
    scan = load_scan(name)
    diag = diagonal(scan.V if scan.reference else scan.P)
    folder = args.work / name
    folder.mkdir(parents=True, exist_ok=True)
    ply = folder / "cloud.ply"
    save_points(ply, scan.P)
    inp = {"name": name, "kind": "mesh", "obj": ply, "dir": folder, "P": scan.P}
    print(f"- {name}: {len(scan.P)} points; ours ...", flush=True)
    rows = [run_ours(inp, args.preset, args.ours, args.timeout)]
    for peer in args.peers:
        print(f"- {name}: {peer} ...", flush=True)
        rows += run_peer(inp, peer, args.timeout)
    for row in rows:
        row.update(scan=name, points=len(scan.P), diagonal=diag)
        if "error" in row:
            print(f"  {row['tool']} failed: {row['error']}", flush=True)
            continue
        V, F = row.pop("V"), row.pop("F")
        row.update(scan_report(scan.P, V, F, diag, scan.V, scan.F, SEEN, args.samples, args.seed))
    pngs = []
    if args.renders:
        # horizontal part of the scanner's direction, reversed, for the back
        back = -scan.view * np.array([1.0, 0.0, 1.0])
        for side, view in (("front", scan.view), ("back", back)):
            png = render(
                inp, rows, diag, True, args, blender_view(view), RENDERED, f"{name}-{side}"
            )
            if png:
                pngs.append(str(png))
    return rows, pngs


def remeasure(args) -> int:
    """The metrics again, on the results a run left (its JSON and result files), without
    running any tool: for a change of the metrics alone."""
    doc = json.loads(args.out.read_text())
    scans = {}
    for row in doc["rows"]:
        if "error" in row or row["scan"] not in args.scans:
            continue
        if row["scan"] not in scans:
            scans[row["scan"]] = load_scan(row["scan"])
        scan = scans[row["scan"]]
        if row["output"].endswith(".npz"):
            V, F = (np.load(row["output"])[k] for k in "VF")
        else:
            g = load_geometry(row["output"])
            V, F = g.vertices, g.faces
        row.update(
            scan_report(
                scan.P,
                V,
                F,
                row["diagonal"],
                scan.V,
                scan.F,
                SEEN,
                args.samples,
                args.seed,
            )
        )
    doc.update(seen=SEEN, samples=args.samples, seed=args.seed)
    save_doc(args.out, doc)
    print(markdown_table(doc["rows"], COLUMNS))
    print(f"\nwrote {args.out}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.remeasure:
        return remeasure(args)
    machine = machine_info()
    print(f"machine: {machine['cpu']} ({machine['cpu_count']} cores)", flush=True)
    rows: list[dict] = []
    renders: list[str] = []
    doc = results_doc(args, machine, rows, renders, seen=SEEN)
    for name in args.scans:
        try:
            mine, pngs = run_scan(name, args)
        except MissingData as exc:
            print(f"- {name}: skipped, {exc}", flush=True)
            continue
        rows += mine
        renders += pngs
        # after every scan, so that a run stopped early keeps what it measured
        save_doc(args.out, doc)
    print("\nDistances in % of the diagonal (the reference's, else the scan's)\n")
    print(markdown_table(rows, COLUMNS))
    print(f"\nwrote {args.out}" + (f" and {len(renders)} renders" if renders else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
