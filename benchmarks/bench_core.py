"""Core benchmark: what a LipSDF remesh costs and how close it stays to the input.

For every mesh and preset it trains a signed field (``train_field``), extracts its zero level
set at the preset's resolution N (``extract``) and measures:

- seconds: labelling and training (both from ``field.record``), extraction, and the whole
  remesh (wall time of ``train_field`` plus ``extract``);
- evals %: field evaluations of the pruned extractor as a share of a dense ``(N+1)^3`` grid;
  for the fast preset also one extraction at 512^3 (evals %, seconds, process max RSS);
- Chamfer-L1 and Hausdorff between input and output as % of the input's bounding-box
  diagonal (100k area-uniform samples per surface, exact point-to-triangle distances);
- NC: normal consistency, mean |n_a . n_b| between a sample's face normal and the closest
  face's normal on the other mesh, both ways;
- watertight and number of connected components of the output;
- IoU: volume IoU against the input's own solid on 200k uniform points in the input's box
  grown by 5% of its size on every side; inside = generalised winding number > 0.5 for the
  input (any soup) and for the output (closed, so this is the plain inside test);
- max|grad f| over 100k uniform points of that box (autograd; a 1-Lipschitz field gives <= 1);
- |f|<=d %: share of those points where |f| <= true unsigned distance to the input + 1e-6,
  i.e. where the field is a lower bound of the distance, as sphere tracing and pruning need.

Run from the project root (defaults: the meshes in ../shared/meshes, fast and balanced
presets, JSON to benchmarks/results/core.json)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_core.py
    PYTHONPATH=. .venv/bin/python benchmarks/bench_core.py ../shared/meshes/spot.obj \\
        --presets fast --steps 300 --resolution 64 --hires-resolution 128   # a quick check

``--steps`` and ``--resolution`` override every preset (for quick checks, not for numbers to
publish); ``--hires-resolution 0`` skips the 512^3 extraction.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from pathlib import Path

import igl
import numpy as np
import torch

from lipsdf_blender.core.device import DEVICES, describe, pick_device
from lipsdf_blender.core.fields.query import value_and_gradient
from lipsdf_blender.core.formats.files import load_geometry
from lipsdf_blender.core.surfaces import metrics, topology
from lipsdf_blender.core.surfaces.extract import extract
from lipsdf_blender.core.training.presets import PRESETS
from lipsdf_blender.core.training.train import train_field

PROJECT = Path(__file__).resolve().parents[1]
MESH_DIR = Path(__file__).resolve().parents[2] / "shared" / "meshes"
DEFAULT_JSON = PROJECT / "benchmarks" / "results" / "core.json"

N_SURFACE = 100_000  # samples per surface for Chamfer, Hausdorff and NC
N_VOLUME = 200_000  # points for the volume IoU
N_FIELD = 100_000  # points for the gradient and lower-bound checks
BOX_GROWTH = 0.05
BOUND_TOL = 1e-6

COLUMNS = [
    ("mesh", "mesh", "{}"),
    ("preset", "preset", "{}"),
    ("label s", "seconds_labelling", "{:.1f}"),
    ("train s", "seconds_training", "{:.1f}"),
    ("extract s", "seconds_extraction", "{:.1f}"),
    ("total s", "seconds_total", "{:.1f}"),
    ("evals %", "evaluations_percent", "{:.2f}"),
    ("chamfer %", "chamfer_percent", "{:.3f}"),
    ("hausdorff %", "hausdorff_percent", "{:.2f}"),
    ("in→out %", "hausdorff_in_out_percent", "{:.2f}"),
    ("out→in %", "hausdorff_out_in_percent", "{:.2f}"),
    ("NC", "normal_consistency", "{:.4f}"),
    ("watertight", "watertight", "{}"),
    ("components", "components", "{}"),
    ("IoU", "iou", "{:.4f}"),
    ("max|∇f|", "max_gradient_norm", "{:.4f}"),
    ("|f|<=d %", "lower_bound_percent", "{:.2f}"),
    ("slope", "median_slope", "{:.3f}"),
]
HIRES_COLUMNS = [
    ("mesh", "mesh", "{}"),
    ("resolution", "resolution", "{}"),
    ("evals %", "evaluations_percent", "{:.3f}"),
    ("seconds", "seconds", "{:.1f}"),
    ("faces", "faces", "{}"),
    ("max RSS MiB", "max_rss_mib", "{:.0f}"),
    ("RSS growth MiB", "rss_growth_mib", "{:.0f}"),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("meshes", nargs="*", type=Path, help="mesh files (default: shared meshes)")
    p.add_argument("--presets", default="fast,balanced", help="comma-separated preset names")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write all rows")
    p.add_argument("--steps", type=int, help="override every preset's training steps")
    p.add_argument("--resolution", type=int, help="override every preset's resolution")
    p.add_argument(
        "--hires-resolution",
        default="256,512",
        help="comma-separated resolutions of the fast preset's extra extractions ('0': skip)",
    )
    p.add_argument("--device", default="cpu", choices=DEVICES, help="where to train and extract")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.presets = [s.strip() for s in args.presets.split(",") if s.strip()]
    unknown = [s for s in args.presets if s not in PRESETS]
    if unknown:
        p.error(f"unknown preset(s) {', '.join(unknown)}; choose from {', '.join(PRESETS)}")
    if not args.meshes:
        args.meshes = sorted(MESH_DIR.glob("*.obj"))
        if not args.meshes:
            p.error(f"no meshes given and none found in {MESH_DIR}")
    return args


# -- machine -------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict:
    return {
        "cpu": cpu_model(),
        "cpu_count": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": describe(device),
        "python": platform.python_version(),
    }


def max_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


# -- measurements --------------------------------------------------------------------------
def grown_box(V: np.ndarray, growth: float = BOX_GROWTH) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of ``V`` grown by ``growth`` times its size on every side."""
    lo, hi = V.min(axis=0), V.max(axis=0)
    pad = growth * (hi - lo)
    return lo - pad, hi + pad


def uniform_points(lo, hi, n: int, rng: np.random.Generator) -> np.ndarray:
    return lo + rng.random((n, 3)) * (hi - lo)


def winding_inside(V: np.ndarray, F: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Inside test by the generalised winding number (works for open soups too)."""
    V = np.ascontiguousarray(V, dtype=np.float64)
    F = np.ascontiguousarray(F, dtype=np.int64)
    return igl.fast_winding_number(V, F, np.ascontiguousarray(Q)) > 0.5


def unsigned_distance(V: np.ndarray, F: np.ndarray, Q: np.ndarray) -> np.ndarray:
    d2, _, _ = igl.point_mesh_squared_distance(np.ascontiguousarray(Q), V, F)
    return np.sqrt(np.maximum(d2, 0.0))


def surface_quality(V, F, Vo, Fo, seed: int) -> dict:
    """Distances (% of the input's diagonal), normal consistency and topology of the output."""
    diag = float(np.linalg.norm(V.max(axis=0) - V.min(axis=0)))
    ch = metrics.chamfer_hausdorff(V, F, Vo, Fo, n=N_SURFACE, seed=seed)
    return {
        "chamfer_percent": 100.0 * ch["chamfer_l1"] / diag,
        "hausdorff_percent": 100.0 * ch["hausdorff"] / diag,
        # One-way: input -> output measures what the output misses; output -> input also
        # counts the caps a closed output must put over the input's holes.
        "hausdorff_in_out_percent": 100.0 * ch["a_to_b_max"] / diag,
        "hausdorff_out_in_percent": 100.0 * ch["b_to_a_max"] / diag,
        "normal_consistency": metrics.normal_consistency(V, F, Vo, Fo, n=N_SURFACE, seed=seed),
        "watertight": topology.is_watertight(Fo),
        "components": topology.connected_components(Fo),
    }


def volume_iou(V, F, Vo, Fo, rng: np.random.Generator) -> float:
    Q = uniform_points(*grown_box(V), N_VOLUME, rng)
    return metrics.volume_iou(winding_inside(V, F, Q), winding_inside(Vo, Fo, Q))


def field_checks(field, V, F, rng: np.random.Generator) -> dict:
    """Largest gradient norm and the share of points where |f| bounds the true distance."""
    Q = uniform_points(*grown_box(V), N_FIELD, rng)
    f, g = value_and_gradient(field, Q)
    d = unsigned_distance(V, F, Q)
    far = d > 0.01 * np.linalg.norm(V.max(0) - V.min(0))
    return {
        "max_gradient_norm": float(np.linalg.norm(g, axis=1).max()),
        "lower_bound_percent": 100.0 * float(np.mean(np.abs(f) <= d + BOUND_TOL)),
        # |f| / d away from the surface: 1 for a true distance. A raw level set f = D lies at
        # about D / slope from the surface.
        "median_slope": float(np.median(np.abs(f)[far] / d[far])),
    }


def dense_percent(evaluations: int, resolution: int) -> float:
    return 100.0 * evaluations / (resolution + 1) ** 3


def timed_extract(field, resolution: int, device: torch.device):
    t0 = time.perf_counter()
    result = extract(field, 0.0, resolution=resolution, device=device)
    return result, time.perf_counter() - t0


def hires_extraction(field, mesh: str, resolution: int, device: torch.device) -> dict:
    """One large extraction: its cost, and the process's peak memory after it."""
    before = max_rss_mib()
    result, seconds = timed_extract(field, resolution, device)
    after = max_rss_mib()
    return {
        "mesh": mesh,
        "resolution": resolution,
        "evaluations": result.stats.evaluations,
        "evaluations_percent": dense_percent(result.stats.evaluations, resolution),
        "seconds": seconds,
        "faces": len(result.faces),
        "max_rss_mib": after,
        "rss_growth_mib": after - before,
    }


def bench_one(path: Path, preset: str, args, device: torch.device) -> tuple[dict, list[dict]]:
    """Remesh one mesh with one preset; returns its row and the rows of extra extractions."""
    geom = load_geometry(path)
    V, F = geom.vertices, geom.faces
    overrides = {"steps": args.steps} if args.steps else {}
    resolution = args.resolution or PRESETS[preset].resolution

    t0 = time.perf_counter()
    field = train_field(geom, preset, device=device.type, seed=args.seed, **overrides)
    t_field = time.perf_counter() - t0
    result, t_extract = timed_extract(field, resolution, device)
    Vo, Fo = result.vertices, result.faces

    row = {
        "mesh": path.stem,
        "preset": preset,
        "input_vertices": len(V),
        "input_faces": len(F),
        "steps": field.record["settings"]["steps"],
        "resolution": resolution,
        "device": field.record["device"],
        "seconds_labelling": field.record["seconds_labelling"],
        "seconds_training": field.record["seconds_training"],
        "seconds_extraction": t_extract,
        "seconds_total": t_field + t_extract,
        "final_loss": field.record["final_loss"],
        "evaluations": result.stats.evaluations,
        "evaluations_percent": dense_percent(result.stats.evaluations, resolution),
        "evaluations_percent_of_grid": 100.0 * result.stats.ratio,
        "output_vertices": len(Vo),
        "output_faces": len(Fo),
    }
    rng = np.random.default_rng(args.seed)
    if result.is_empty:
        print(f"  warning: {path.stem}/{preset} gave an empty surface", flush=True)
    else:
        row.update(surface_quality(V, F, Vo, Fo, args.seed))
        row["iou"] = volume_iou(V, F, Vo, Fo, rng)
    row.update(field_checks(field, V, F, rng))

    hires = []
    if preset == "fast":
        for res in (int(r) for r in str(args.hires_resolution).split(",")):
            if res > 0:
                hires.append(hires_extraction(field, path.stem, res, device))
    return row, hires


# -- output --------------------------------------------------------------------------------
def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def markdown_table(rows: list[dict], columns) -> str:
    head = "| " + " | ".join(c[0].replace("|", "\\|") for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(r, k, f) for _, k, f in columns) + " |" for r in rows]
    return "\n".join([head, rule, *body])


def write_json(path: Path, machine: dict, rows: list[dict], hires: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"machine": machine, "rows": rows, "hires": hires}
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def main(argv=None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    machine = machine_info(device)
    print(
        f"machine: {machine['cpu']} ({machine['cpu_count']} cores), torch {machine['torch']} "
        f"with {machine['torch_threads']} threads, device {machine['device']}",
        flush=True,
    )
    rows, hires = [], []
    for path in args.meshes:
        for preset in args.presets:
            print(f"- {path.stem} / {preset} ...", flush=True)
            row, big = bench_one(path, preset, args, device)
            rows.append(row)
            print(f"  done in {row['seconds_total']:.1f} s", flush=True)
            hires.extend(big)
    print()
    print(markdown_table(rows, COLUMNS))
    if hires:
        print("\nFast preset's field extracted again at other resolutions (max RSS after):\n")
        print(markdown_table(hires, HIRES_COLUMNS))
    write_json(args.json, machine, rows, hires)
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
