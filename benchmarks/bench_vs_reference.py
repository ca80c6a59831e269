"""Side by side: our trainer against the reference recipe, time to the same quality.

Two phases, so the timed one runs alone on its core:

``train``
    For each mesh, runs our trainer (``train_field``, a preset, default ``fast``) and then the
    reference recipe (``reference_recipe.py``) under a wall-clock cap, both in this process
    with the same thread count, and saves snapshots of both networks at a series of wall-clock
    times. Times count labelling plus training; snapshot copies are not counted.
``eval``
    For each snapshot: the reference's hKR loss (margin 0.01, lambda 100, reference frame, per
    point) on a held-out set drawn from the reference's distribution, and the Chamfer-L1
    distance (% of the input's diagonal, ``metrics.chamfer_hausdorff``) of its zero level set
    extracted at ``--resolution``. Then the time each trainer needs to reach (a) the best
    value the reference reached within its cap and (b) our final value; where the reference
    never reaches (b) the ratio is a lower bound, ``cap / our time``.

Fair CPU comparison (one core each, the same conditions)::

    taskset -c 1 env PYTHONPATH=. .venv/bin/python benchmarks/bench_vs_reference.py train \\
        --threads 1 --cap 600
    PYTHONPATH=. .venv/bin/python benchmarks/bench_vs_reference.py eval

On a GPU: ``... train --device cuda --cap 600`` then ``... eval --device cuda``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_recipe import (  # noqa: E402
    MARGIN,
    ReferenceNet,
    reference_field,
    reference_frame,
    reference_samples,
    train_reference,
)

from lipsdf_blender.core.fields.field import Field  # noqa: E402
from lipsdf_blender.core.fields.network import LipschitzMLP  # noqa: E402
from lipsdf_blender.core.formats.files import load_geometry  # noqa: E402
from lipsdf_blender.core.surfaces import metrics  # noqa: E402
from lipsdf_blender.core.surfaces.extract import extract  # noqa: E402
from lipsdf_blender.core.training.presets import get_preset
from lipsdf_blender.core.training.train import train_field  # noqa: E402

MESH_DIR = Path(__file__).resolve().parents[2] / "shared" / "meshes"
OUT_DIR = Path(__file__).resolve().parent / "results" / "vs_reference"
MESHES = ("spot", "stanford-bunny", "fandisk")
REF_TIMES = (5, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 360, 420, 480, 540, 600, 900, 1200)
N_HELD = 20_000
EVAL_LAM = 100.0


def _state(net: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def _train_ours(geom, args) -> tuple[dict, list]:
    snaps, hook_time = [], [0.0]
    times = list(np.arange(args.ours_every, 10 * args.cap, args.ours_every))
    t_start = time.perf_counter()

    def hook(step, net):
        now = time.perf_counter()
        elapsed = now - t_start - hook_time[0]
        if times and elapsed >= times[0]:
            while times and times[0] <= elapsed:
                times.pop(0)
            snaps.append((elapsed, step, _state(net)))
        hook_time[0] += time.perf_counter() - now

    overrides = json.loads(args.overrides) if args.overrides else {}
    if args.steps:
        overrides["steps"] = args.steps
    field = train_field(
        geom, args.preset, device=args.device, seed=args.seed, on_step=hook, **overrides
    )
    total = time.perf_counter() - t_start - hook_time[0]
    snaps.append((total, field.record["settings"]["steps"], _state(field.net)))
    ours = {
        "preset": args.preset,
        "settings": field.record["settings"],
        "center": field.center.tolist(),
        "scale": field.scale,
        "seconds_labelling": field.record["seconds_labelling"],
        "seconds_training": field.record["seconds_training"],
        "seconds_total": total,
        "snapshots": [(t, s) for t, s, _ in snaps],
    }
    return ours, [st for _, _, st in snaps]


def _train_ref(geom, args) -> tuple[dict, list]:
    t0 = time.perf_counter()
    Xi, Xo = reference_samples(geom, seed=args.seed)
    t_label = time.perf_counter() - t0
    snaps = []

    def on_snapshot(elapsed, epoch, step, net):
        snaps.append((t_label + elapsed, epoch, step, _state(net)))

    times = [t for t in REF_TIMES if t < args.cap]
    _, curve = train_reference(
        Xi, Xo, args.cap, times, seed=args.seed, device=args.device, on_snapshot=on_snapshot
    )
    ref = {
        "seconds_labelling": t_label,
        "cap": args.cap,
        "curve": curve,
        "snapshots": [(t, e, s) for t, e, s, _ in snaps],
    }
    return ref, [st for *_, st in snaps]


def train_phase(args) -> None:
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.meshes:
        geom = load_geometry(MESH_DIR / f"{name}.obj")
        ours, states = _train_ours(geom, args)
        torch.save(states, args.out / f"{name}_ours.pt")
        print(f"{name}: ours {ours['seconds_total']:.1f} s", flush=True)
        if args.skip_reference:  # keep the reference run already in --out
            meta = json.loads((args.out / f"{name}_train.json").read_text())
            meta["ours"] = ours
            (args.out / f"{name}_train.json").write_text(json.dumps(meta, indent=1))
            continue
        ref, states = _train_ref(geom, args)
        torch.save(states, args.out / f"{name}_ref.pt")
        meta = {
            "mesh": name,
            "device": args.device,
            "threads": args.threads,
            "torch": torch.__version__,
            "ours": ours,
            "reference": ref,
        }
        (args.out / f"{name}_train.json").write_text(json.dumps(meta, indent=1))
        last = ref["curve"][-1]
        print(
            f"{name}: reference {last[1]} epochs, {last[2]} steps in {args.cap:.0f} s", flush=True
        )


def held_out(geom, seed: int):
    """Held-out points of the reference's distribution, object units, with labels."""
    Xi, Xo = reference_samples(geom, n=N_HELD, seed=seed)
    center, scale = reference_frame(geom.vertices)
    X = np.concatenate([Xi, Xo]).astype(np.float64) / scale + center
    y = np.concatenate([-np.ones(len(Xi)), np.ones(len(Xo))])
    return X, y, scale


def hkr_eval(field, X, y, ref_scale: float) -> float:
    """The reference's loss per point (margin 0.01, lambda 100) in the reference frame."""
    f = field.evaluate(X) * ref_scale
    yf = y * f
    return float(
        np.mean(np.maximum(MARGIN - yf, 0.0))
        + (-yf[y < 0].mean() - yf[y > 0].mean()) / 2 / EVAL_LAM
    )


def chamfer(field, geom, resolution: int, device) -> float:
    res = extract(field, 0.0, resolution=resolution, device=device)
    if res.is_empty:
        return math.inf
    V, F = geom.vertices, geom.faces
    diag = float(np.linalg.norm(V.max(axis=0) - V.min(axis=0)))
    ch = metrics.chamfer_hausdorff(V, F, res.vertices, res.faces, n=args_n_surface[0], seed=0)
    return 100.0 * ch["chamfer_l1"] / diag


args_n_surface = [50_000]


def _ours_field(state, meta, geom) -> Field:
    s = meta["settings"]
    net = LipschitzMLP(s["depth"], s["width"])
    net.load_state_dict(state)
    lo, hi = geom.bounds()
    return Field(net, meta["center"], meta["scale"], lo, hi, "signed", {})


def _ref_field(state, geom) -> Field:
    net = ReferenceNet()
    net.load_state_dict(state)
    return reference_field(net, geom)


def time_to(points, target: float):
    """First time at which a curve ``[(t, value)]`` is at or below ``target``; None if never."""
    for t, v in points:
        if v <= target:
            return t
    return None


def eval_phase(args) -> None:
    torch.set_num_threads(args.threads)
    args_n_surface[0] = args.n_surface
    dev = torch.device(args.device)
    for name in args.meshes:
        meta = json.loads((args.out / f"{name}_train.json").read_text())
        geom = load_geometry(MESH_DIR / f"{name}.obj")
        X, y, ref_scale = held_out(geom, seed=args.seed + 1)
        curves = {}
        for who, states, times in (
            ("ours", torch.load(args.out / f"{name}_ours.pt"), meta["ours"]["snapshots"]),
            ("ref", torch.load(args.out / f"{name}_ref.pt"), meta["reference"]["snapshots"]),
        ):
            pts = []
            for state, tm in zip(states, times, strict=True):
                f = (
                    _ours_field(state, meta["ours"], geom)
                    if who == "ours"
                    else _ref_field(state, geom)
                )
                t = tm[0]
                pts.append(
                    {
                        "t": t,
                        "hkr": hkr_eval(f, X, y, ref_scale),
                        "chamfer": chamfer(f, geom, args.resolution, dev),
                    }
                )
                print(
                    f"{name} {who} t={t:7.1f} hkr={pts[-1]['hkr']:.5f} "
                    f"chamfer={pts[-1]['chamfer']:.4f}",
                    flush=True,
                )
            curves[who] = pts
        cap = meta["reference"]["cap"] + meta["reference"]["seconds_labelling"]
        row = {"mesh": name, "curves": curves, "cap_s": cap}
        for metric in ("hkr", "chamfer"):
            o = [(p["t"], p[metric]) for p in curves["ours"]]
            r = [(p["t"], p[metric]) for p in curves["ref"]]
            ref_best = min(v for _, v in r)
            ours_final = o[-1][1]
            t_o_refbest, t_r_refbest = time_to(o, ref_best), time_to(r, ref_best)
            t_o_final, t_r_final = time_to(o, ours_final), time_to(r, ours_final)
            row[metric] = {
                "ref_best": ref_best,
                "ours_final": ours_final,
                "ours_s_to_ref_best": t_o_refbest,
                "ref_s_to_ref_best": t_r_refbest,
                "ratio_at_ref_best": (t_r_refbest / t_o_refbest) if t_o_refbest else None,
                "ours_s_to_ours_final": t_o_final,
                "ref_s_to_ours_final": t_r_final,
                "ratio_at_ours_final": (t_r_final or cap) / t_o_final,
                "ratio_at_ours_final_is_lower_bound": t_r_final is None,
            }
        (args.out / f"{name}_eval.json").write_text(json.dumps(row, indent=1))
    print_table(args.out)


def print_table(out: Path) -> None:
    """The side-by-side table from every ``*_eval.json`` in ``out``."""
    rows = [
        json.loads((out / f"{m}_eval.json").read_text())
        for m in MESHES
        if (out / f"{m}_eval.json").exists()
    ]
    print()
    print(
        "| mesh | metric | reference best (in cap) | ours s to it | reference s to it | ratio "
        "| ours final | ours s | reference s to it | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for metric in ("hkr", "chamfer"):
            m = r[metric]
            fmt = "{:.5f}" if metric == "hkr" else "{:.4f} %"

            def s(v):
                return "never" if v is None else f"{v:.1f}"

            ratio2 = ("≥ " if m["ratio_at_ours_final_is_lower_bound"] else "") + (
                f"{m['ratio_at_ours_final']:.1f}×"
            )
            r1 = "-" if m["ratio_at_ref_best"] is None else f"{m['ratio_at_ref_best']:.1f}×"
            print(
                f"| {r['mesh']} | {metric} | {fmt.format(m['ref_best'])} | "
                f"{s(m['ours_s_to_ref_best'])} | {s(m['ref_s_to_ref_best'])} | {r1} | "
                f"{fmt.format(m['ours_final'])} | {s(m['ours_s_to_ours_final'])} | "
                f"{s(m['ref_s_to_ours_final'])} | {ratio2} |"
            )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("phase", choices=["train", "eval", "table"])
    p.add_argument("--meshes", default=",".join(MESHES))
    p.add_argument("--preset", default="fast")
    p.add_argument("--steps", type=int)
    p.add_argument("--overrides", help="JSON preset overrides for our trainer")
    p.add_argument("--skip-reference", action="store_true", help="train ours only")
    p.add_argument("--cap", type=float, default=600.0, help="reference wall-clock cap, s")
    p.add_argument("--ours-every", type=float, default=2.0, help="our snapshot interval, s")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=192, help="extraction for Chamfer")
    p.add_argument("--n-surface", type=int, default=50_000, help="Chamfer samples per surface")
    p.add_argument("--out", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)
    args.meshes = [m for m in args.meshes.split(",") if m]
    get_preset(args.preset)
    if args.phase == "table":
        print_table(args.out)
    else:
        (train_phase if args.phase == "train" else eval_phase)(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
