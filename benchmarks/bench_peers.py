"""Side by side: LipSDF's remesh against Blender's voxel remesh and MeshFix (issue 9).

One run gives one table per kind of input, from one implementation of the metrics
(``core.surfaces.reports.surface_report`` and ``thickness_report``):

- **Signed** inputs (the shared meshes and shapes made in code: a cube, a block with a thin
  fin, an L-bracket, a stepped block, a soup of intersecting open parts). Rows: each ``--ours``
  variant, run as ``python -m lipsdf_blender remesh IN -o OUT.obj ARGS``; Blender's voxel
  remesh (the Remesh modifier in Voxel mode, through the ``bpy`` module) at 256 voxels on the
  longest side and at the voxel size whose face count is nearest the first ``--ours`` row's;
  MeshFix (``pymeshfix``'s default repair).
- **Unsigned** inputs (an open flat sheet with thin legs and teeth, a circle polyline) made
  solid at half-thickness T. Rows: each ``--ours`` variant with ``--mode unsigned --thickness
  T``; Blender's Solidify (thickness 2T, offset 0) for the sheet and a curve bevel (depth T)
  for the circle.

Every tool runs in its own process. ``seconds``: for ours the wall time of the CLI process
(start-up, reading, training, extraction, writing); for the peers only the operation itself
(modifier evaluation or repair), without Python start-up, importing bpy or moving data, which
favours the peers. Face counts are triangles (a voxel remesh's quads count twice).

Run from the project root (peers from requirements-bench.txt and requirements-blender.txt)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_peers.py                 # everything
    PYTHONPATH=. .venv/bin/python benchmarks/bench_peers.py --quick --inputs cube,sheet \\
        --ours "fast=--preset fast --steps 300 --resolution 96"             # a smoke run
    PYTHONPATH=. .venv/bin/python benchmarks/bench_peers.py \\
        --ours fast="--preset fast" --ours high="--preset high --device cuda"

Writes benchmarks/results/peers.json, the tools' outputs under benchmarks/results/peers/ and
one Workbench render per input (input | first --ours variant | each peer, one camera) to
benchmarks/renders/<input>.png.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    MESH_DIR,
    PROJECT,
    env,
    json_default,
    machine_info,
    markdown_table,
    mesh_npz,
    render_tiles,
    run_job,
    stitch,
    tail,
)
from peer_shapes import SHAPES  # noqa: E402
from reports import surface_report, thickness_report  # noqa: E402

from lipsdf_blender.core.formats.files import load_geometry, save_mesh  # noqa: E402

SHARED = ("spot", "fandisk", "stanford-bunny", "suzanne")
ALL_INPUTS = SHARED + tuple(SHAPES)
JOBS = Path(__file__).resolve().parent / "peer_jobs.py"
DEFAULT_JSON = PROJECT / "benchmarks" / "results" / "peers.json"
DEFAULT_WORK = PROJECT / "benchmarks" / "results" / "peers"
DEFAULT_RENDERS = PROJECT / "benchmarks" / "renders"
SIGNED_PEERS = ("voxel-256", "voxel-match", "meshfix")
UNSIGNED_PEERS = ("solidify", "bevel")
#: half-thickness T of the unsigned inputs (object units; the circle's is the Blender test's)
THICKNESS = {"sheet": 0.02, "circle": 0.05}
TILE = (240, 240)
#: direction from the input's centre to the camera; flat inputs are seen from above
VIEW = {"sheet": (0.3, -0.9, 1.6), "circle": (0.3, -0.9, 1.6)}

SIGNED_COLUMNS = [
    ("input", "input", "{}"),
    ("tool", "tool", "{}"),
    ("seconds", "seconds", "{:.1f}"),
    ("faces", "faces", "{}"),
    ("Chamfer %", "chamfer_percent", "{:.3f}"),
    ("in→out %", "hausdorff_in_out_percent", "{:.2f}"),
    ("out→in %", "hausdorff_out_in_percent", "{:.2f}"),
    ("normal° mean", "normal_error_mean_deg", "{:.1f}"),
    ("normal° p95", "normal_error_p95_deg", "{:.1f}"),
    ("IoU", "iou", "{:.4f}"),
    ("watertight", "watertight", "{}"),
    ("parts", "components", "{}"),
    ("self-int.", "self_intersections", "{}"),
]
UNSIGNED_COLUMNS = [
    ("input", "input", "{}"),
    ("tool", "tool", "{}"),
    ("T", "thickness", "{:g}"),
    ("seconds", "seconds", "{:.1f}"),
    ("faces", "faces", "{}"),
    ("median", "median_thickness", "{:.4f}"),
    ("median err %", "thickness_error_percent", "{:+.1f}"),
    ("p95 |d−T| % of T", "p95_thickness_error_percent", "{:.1f}"),
    ("input inside %", "input_inside_percent", "{:.1f}"),
    ("in→out", "hausdorff_in_out", "{:.4f}"),
    ("≤ T+0.5%", "within_bound", "{}"),
    ("watertight", "watertight", "{}"),
    ("parts", "components", "{}"),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="inputs: " + ", ".join(ALL_INPUTS),
    )
    p.add_argument("--inputs", default=",".join(ALL_INPUTS), help="comma-separated names")
    p.add_argument(
        "--ours",
        action="append",
        metavar="LABEL=ARGS",
        help="a LipSDF variant: a label and the CLI's remesh arguments (repeatable; default "
        "'fast=--preset fast'); the first one sets voxel-match's face count and is rendered",
    )
    p.add_argument(
        "--peers",
        default=",".join(SIGNED_PEERS + UNSIGNED_PEERS),
        help="comma-separated subset of " + ", ".join(SIGNED_PEERS + UNSIGNED_PEERS),
    )
    p.add_argument("--samples", type=int, default=200_000, help="samples a surface, IoU points")
    p.add_argument("--quick", action="store_true", help="20k samples (a smoke run)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="inputs and outputs go here")
    p.add_argument("--renders", default=str(DEFAULT_RENDERS), help="PNG folder ('' skips)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a tool may run")
    args = p.parse_args(argv)
    args.inputs = [s.strip() for s in args.inputs.split(",") if s.strip()]
    unknown = [s for s in args.inputs if s not in ALL_INPUTS]
    if unknown:
        p.error(f"unknown input(s) {', '.join(unknown)}; choose from {', '.join(ALL_INPUTS)}")
    args.peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = [s for s in args.peers if s not in SIGNED_PEERS + UNSIGNED_PEERS]
    if unknown:
        p.error(f"unknown peer(s) {', '.join(unknown)}")
    variants = []
    for spec in args.ours or ["fast=--preset fast"]:
        label, sep, rest = spec.partition("=")
        if not sep or not label.strip():
            p.error(f"--ours wants LABEL=ARGS, got {spec!r}")
        variants.append((label.strip(), shlex.split(rest)))
    args.ours = variants
    if args.quick:
        args.samples = min(args.samples, 20_000)
    return args


# -- inputs ---------------------------------------------------------------------------------
def _write_curve_obj(path: Path, V, E) -> None:
    lines = [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in V]
    lines += [f"l {a + 1} {b + 1}" for a, b in E]
    path.write_text("\n".join(lines) + "\n")


def prepare_input(name: str, work: Path) -> dict:
    """The input as an OBJ for the CLI and an npz for the peers, and its arrays."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    if name in SHARED:
        kind = "mesh"
        obj = MESH_DIR / f"{name}.obj"
        g = load_geometry(obj)
        V, S = g.vertices, g.faces
    else:
        kind, make = SHAPES[name]
        V, S = make()
        obj = folder / "input.obj"
        if kind == "curve":
            _write_curve_obj(obj, V, S)
        else:
            save_mesh(obj, V, S)
    npz = folder / "input.npz"
    np.savez(npz, V=V, **({"E": S} if kind == "curve" else {"F": S}))
    return {"name": name, "kind": kind, "obj": obj, "npz": npz, "V": V, "S": S, "dir": folder}


# -- running the tools ----------------------------------------------------------------------
def run_ours(inp: dict, label: str, extra: list[str], timeout: float) -> dict:
    out = inp["dir"] / f"ours-{label}.obj"
    cmd = [sys.executable, "-m", "lipsdf_blender", "remesh", str(inp["obj"]), "-o", str(out)]
    if inp["kind"] != "mesh":
        cmd += ["--mode", "unsigned", "--thickness", str(THICKNESS[inp["name"]])]
    cmd += extra
    row = {"tool": f"LipSDF {label}", "args": shlex.join(extra), "output": str(out)}
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
    # what the CLI said about the result (a cloud's summary line among them)
    row["said"] = [s for s in proc.stdout.splitlines() if s.strip()][-6:]
    g = load_geometry(out)
    row["V"], row["F"] = g.vertices, g.faces
    return row


def run_peer(inp: dict, peer: str, timeout: float, target_faces: int | None = None) -> dict:
    out = inp["dir"] / f"{peer}.npz"
    job, extra, tool = {
        "voxel-256": ("voxel", [], "Blender voxel remesh, 256"),
        "voxel-match": ("voxel", ["--target-faces", str(target_faces)], "Blender voxel, our faces"),
        "meshfix": ("meshfix", [], "MeshFix"),
        "solidify": ("solidify", ["--thickness", str(2 * THICKNESS.get(inp["name"], 0))], ""),
        "bevel": ("bevel", ["--depth", str(THICKNESS.get(inp["name"], 0))], ""),
    }[peer]
    tool = tool or {"solidify": "Blender Solidify 2T", "bevel": "Blender curve bevel T"}[peer]
    cmd = [sys.executable, str(JOBS), job, str(inp["npz"]), str(out), *extra]
    row = {"tool": tool, "args": shlex.join([job, *extra]), "output": str(out)}
    result = run_job(cmd, timeout)
    row.update(result)
    if "error" in result:
        return row
    data = np.load(out)
    row["V"], row["F"] = data["V"], data["F"]
    return row


def name_is_shared(name: str) -> bool:
    """The shared meshes are y-up OBJ files; the shapes made in code are z-up."""
    return name in SHARED


def peers_for(inp: dict, wanted: list[str]) -> list[str]:
    applicable = {"mesh": SIGNED_PEERS, "sheet": ("solidify",), "curve": ("bevel",)}[inp["kind"]]
    return [p for p in applicable if p in wanted]


def measure(inp: dict, row: dict, samples: int, seed: int) -> dict:
    """Add the metrics to a row that has a result (``V``, ``F``)."""
    V, F = row.pop("V"), row.pop("F")
    if len(F) == 0:
        return {**row, "error": "empty result", "faces": 0}
    if inp["kind"] == "mesh":
        row.update(surface_report(inp["V"], inp["S"], V, F, n=samples, seed=seed))
    else:
        T = THICKNESS[inp["name"]]
        rep = thickness_report(inp["V"], inp["S"], V, F, T, n=samples, seed=seed)
        row.update(thickness=T, **rep)
    return row


# -- renders --------------------------------------------------------------------------------
def render(inp: dict, rows: list[dict], folder: Path, timeout: float) -> Path | None:
    """input | first ours | each peer, one camera, stitched side by side into one PNG."""
    items = [(inp["name"], str(inp["npz"]))]
    for row in rows:
        if "error" in row or "output" not in row:
            continue
        if row["tool"].startswith("LipSDF") and any(t.startswith("LipSDF") for t, _ in items):
            continue  # only the first variant of ours
        items.append((row["tool"], mesh_npz(row["output"], inp["dir"])))
    pngs = [str(inp["dir"] / f"tile{i}.png") for i in range(len(items))]
    spec = {
        "items": [p for _, p in items],
        "pngs": pngs,
        "size": TILE,
        "view": VIEW.get(inp["name"]),
        "y_up": name_is_shared(inp["name"]),
    }
    error = render_tiles(spec, inp["dir"] / "render.json", timeout)
    if error:
        print(f"  render failed: {error}", flush=True)
        return None
    return stitch([t for t, _ in items], pngs, folder / f"{inp['name']}.png")


# -- output ---------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    machine = machine_info()
    print(f"machine: {machine['cpu']} ({machine['cpu_count']} cores)", flush=True)
    rows: list[dict] = []
    renders = []
    for name in args.inputs:
        inp = prepare_input(name, args.work)
        mine = []
        for label, extra in args.ours:
            print(f"- {name} / LipSDF {label} ...", flush=True)
            mine.append(run_ours(inp, label, extra, args.timeout))
        target = next((len(r["F"]) for r in mine[:1] if "F" in r), None)
        for peer in peers_for(inp, args.peers):
            if peer == "voxel-match" and target is None:
                continue
            print(f"- {name} / {peer} ...", flush=True)
            mine.append(run_peer(inp, peer, args.timeout, target))
        for row in mine:
            row["input"], row["kind"] = name, inp["kind"]
            if "error" not in row:
                measure(inp, row, args.samples, args.seed)
            else:
                print(f"  {row['tool']} failed: {row['error']}", flush=True)
        if args.renders:
            png = render(inp, mine, Path(args.renders), args.timeout)
            if png:
                renders.append(str(png))
        rows.extend(mine)

    signed = [r for r in rows if r["kind"] == "mesh"]
    unsigned = [r for r in rows if r["kind"] != "mesh"]
    if signed:
        print("\nSigned: distances in % of the input's bounding-box diagonal\n")
        print(markdown_table(signed, SIGNED_COLUMNS))
    if unsigned:
        print("\nUnsigned: half-thickness T, distances in object units\n")
        print(markdown_table(unsigned, UNSIGNED_COLUMNS))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "machine": machine,
        "samples": args.samples,
        "seed": args.seed,
        "ours": [{"label": lab, "args": shlex.join(a)} for lab, a in args.ours],
        "rows": rows,
        "renders": renders,
    }
    args.json.write_text(json.dumps(doc, indent=2, default=json_default) + "\n")
    print(f"\nwrote {args.json}" + (f" and {len(renders)} renders" if renders else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
