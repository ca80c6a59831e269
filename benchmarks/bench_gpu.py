"""GPU benchmark in one call: checks, peak rates, steps, the high preset, extraction, reference.

Sections (all by default; ``--sections`` picks some):

``env``      torch, CUDA, GPU, libigl and numpy versions; libigl must import.
``peak``     measured matrix-product rates (8192^3 fp32, tf32, bf16) and a large copy's bandwidth:
             the ceilings the other numbers are compared with.
``steps``    seconds per training step of a 20 x 128 network: eager vs CUDA graph, fp32 / tf32 /
             bf16, several batch sizes, and the reference's step (per-layer T, 2 x 200 points);
             achieved FLOP/s (3 x 1.31 MFLOP per point).
``check``    the trained form and the folded form agree; a bf16-trained, CUDA-graph-trained
             network is still 1-Lipschitz in float32 (max |grad f| over random points).
``train``    the ``high`` preset (and ``--variants``) on each mesh: labelling and training seconds,
             Chamfer-L1 and Hausdorff (% of the diagonal, 100k samples each way) of the zero level
             set at the preset's resolution, max |grad f|; fields saved to ``--out``.
``extract``  each trained field at ``--resolutions`` (default 128..1024): seconds (a cold and a
             warm run), evaluations, % of the dense grid, faces, achieved FLOP/s.
``reference`` the reference recipe on the GPU for ``--ref-cap`` seconds on the first mesh, with
             snapshots: time to our Chamfer and hKR.

Run (device machine: python3 with torch+CUDA; libigl from carried wheels)::

    PYTHONPATH=. python3 benchmarks/bench_gpu.py --mesh-dir ../shared/meshes --out OUT_DIR

Prints a short summary table last and writes ``gpu.json`` and fields into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FLOP_PER_POINT = None  # set from the architecture in main


def flop_per_point(depth: int, width: int) -> float:
    """Forward FLOPs per point: two (width x width) products per layer, 2 FLOP per MAC."""
    return depth * 2 * 2 * width * width


def cuda_time(fn, n: int, warm: int = 3) -> float:
    """Median-free simple timing: ``n`` calls after ``warm``, seconds per call (synchronised)."""
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n


# -- sections --------------------------------------------------------------------------------
def sec_env(args, out):
    import igl

    p = torch.cuda.get_device_properties(0)
    out["env"] = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": p.name,
        "sms": p.multi_processor_count,
        "memory_gib": p.total_memory / 2**30,
        "numpy": np.__version__,
        "libigl": getattr(igl, "__version__", "?"),
        "python": sys.version.split()[0],
    }
    # libigl with this numpy: one real call.
    V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64)
    w = igl.fast_winding_number(V, F, np.array([[0.1, 0.1, 0.1], [2.0, 2, 2]]))
    # (|w| = 1 inside: the sign only says how the tetrahedron's faces are oriented.)
    out["env"]["igl_winding_ok"] = bool(abs(abs(w[0]) - 1) < 1e-6 and abs(w[1]) < 1e-6)
    print("env:", out["env"], flush=True)


def sec_peak(args, out):
    n = 8192
    a = torch.randn(n, n, device="cuda")
    b = torch.randn(n, n, device="cuda")
    res = {}
    for name, dtype, tf32 in (
        ("fp32", torch.float32, False),
        ("tf32", torch.float32, True),
        ("bf16", torch.bfloat16, False),
    ):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x, y = a.to(dtype), b.to(dtype)
        s = cuda_time(lambda x=x, y=y: x @ y, 10)
        res[f"matmul_{name}_tflops"] = 2 * n**3 / s / 1e12
    torch.backends.cuda.matmul.allow_tf32 = False
    # The network's own product shape: (B, 128) x (128, 128).
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        x = torch.randn(65536, 128, device="cuda", dtype=dtype)
        w = torch.randn(128, 128, device="cuda", dtype=dtype)
        s = cuda_time(lambda x=x, w=w: x @ w, 50)
        res[f"matmul_65536x128x128_{name}_tflops"] = 2 * 65536 * 128 * 128 / s / 1e12
    src = torch.randn(2**28, device="cuda")
    dst = torch.empty_like(src)
    s = cuda_time(lambda: dst.copy_(src), 10)
    res["copy_tb_s"] = 2 * src.numel() * 4 / s / 1e12
    out["peak"] = res
    print("peak:", {k: round(v, 1) for k, v in res.items()}, flush=True)


def sec_steps(args, out):
    from reference_recipe import ReferenceNet, hkr_reference

    from lipsdf_blender.core.training.presets import get_preset
    from lipsdf_blender.core.training.train import _Step

    dev = torch.device("cuda")
    rows = []
    n = 2_000_000
    X = (torch.rand(n, 3, device=dev) * 2.6 - 1.3).contiguous()
    Y = torch.where(X.norm(dim=1) < 0.8, -1.0, 1.0)
    for batch in (2048, 8192, 16384, 32768):
        for graph, precision in ((False, "fp32"), (True, "fp32"), (True, "tf32"), (True, "bf16")):
            p = get_preset("high", batch_size=batch, cuda_graph=graph, precision=precision)
            torch.manual_seed(0)
            from lipsdf_blender.core.fields.network import LipschitzMLP
            from lipsdf_blender.core.training.train import _matmul_precision

            net = LipschitzMLP(p.depth, p.width, p.bias_shift).to(dev)
            step = _Step(net, X, Y, p, 5e-3, dev, 0)
            with _matmul_precision(dev, precision):
                s = cuda_time(lambda step=step: step(1e-3, 30.0), 100, warm=10)
            fl = 3 * flop_per_point(p.depth, p.width) * batch
            rows.append(
                {
                    "batch": batch,
                    "graph": graph,
                    "precision": precision,
                    "ms_per_step": 1e3 * s,
                    "points_per_s": batch / s,
                    "tflops": fl / s / 1e12,
                }
            )
            print("step:", rows[-1], flush=True)
    # The reference's step: 2 forward calls of 200 points, T recomputed per layer per call.
    torch.manual_seed(0)
    net = ReferenceNet().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=5e-4)
    xi, xo = X[:200].clone(), X[200:400].clone()

    def ref_step():
        loss = hkr_reference(net(xi), net(xo), 100.0)
        opt.zero_grad()
        loss.backward()
        opt.step()

    s = cuda_time(ref_step, 100, warm=10)
    fl = 3 * flop_per_point(20, 128) * 400
    rows.append(
        {
            "batch": 400,
            "graph": False,
            "precision": "reference",
            "ms_per_step": 1e3 * s,
            "points_per_s": 400 / s,
            "tflops": fl / s / 1e12,
        }
    )
    print("step:", rows[-1], flush=True)
    out["steps"] = rows


def sec_check(args, out):
    from lipsdf_blender.core.fields.network import LipschitzMLP
    from lipsdf_blender.core.training.presets import get_preset
    from lipsdf_blender.core.training.train import _matmul_precision, _Step

    dev = torch.device("cuda")
    torch.manual_seed(1)
    n = 200_000
    X = torch.rand(n, 3, device=dev) * 2.6 - 1.3
    Y = torch.where(X.norm(dim=1) < 0.8, -1.0, 1.0)
    res = {}
    for precision in ("bf16", "tf32", "fp32"):
        p = get_preset("high", batch_size=4096, precision=precision, lr=2e-2)
        net = LipschitzMLP(p.depth, p.width, p.bias_shift).to(dev)
        step = _Step(net, X, Y, p, 5e-3, dev, 0)
        with _matmul_precision(dev, precision):
            for _ in range(300):
                step(2e-2, 30.0)
        torch.cuda.synchronize()
        with torch.no_grad():  # push the weights far from the initialisation too
            net.q.add_(torch.randn_like(net.q) * 2)
        folded = net.folded().to(dev)
        x = (torch.randn(100_000, 3, device=dev) * 1.5).requires_grad_(True)
        (g,) = torch.autograd.grad(folded(x).sum(), x)
        with torch.no_grad():
            diff = (folded(x) - net(x)).abs().max().item()
        res[precision] = {"max_grad_norm": g.norm(dim=1).max().item(), "fold_max_diff": diff}
    res["ok"] = all(
        v["max_grad_norm"] <= 1 + 1e-5 and v["fold_max_diff"] < 1e-4 for v in res.values()
    )
    out["check"] = res
    print("check:", res, flush=True)


def _load_mesh(args, name):
    from lipsdf_blender.core.formats.files import load_geometry

    return load_geometry(Path(args.mesh_dir) / f"{name}.obj")


def sec_train(args, out):
    from bench_core import field_checks, surface_quality

    from lipsdf_blender.core.surfaces.extract import extract
    from lipsdf_blender.core.training.train import train_field

    rows = []
    out["fields"] = {}
    for name in args.meshes:
        geom = _load_mesh(args, name)
        for vi, variant in enumerate(args.variants):
            overrides = json.loads(variant) if variant else {}
            t0 = time.perf_counter()
            field = train_field(geom, "high", device="cuda", seed=args.seed, **overrides)
            t_field = time.perf_counter() - t0
            res = field.record["settings"]["resolution"]
            t0 = time.perf_counter()
            mesh = extract(field, 0.0, resolution=res, device="cuda")
            t_ex = time.perf_counter() - t0
            row = {
                "mesh": name,
                "variant": variant or "high",
                "steps": field.record["settings"]["steps"],
                "batch": field.record["settings"]["batch_size"],
                "seconds_labelling": field.record["seconds_labelling"],
                "seconds_training": field.record["seconds_training"],
                "seconds_field": t_field,
                "seconds_extract": t_ex,
                "resolution": res,
                "faces": len(mesh.faces),
            }
            rng = np.random.default_rng(args.seed)
            row.update(surface_quality(geom.vertices, geom.faces, mesh.vertices, mesh.faces, 0))
            row.update(field_checks(field, geom.vertices, geom.faces, rng))
            rows.append(row)
            print(
                f"train: {name} {row['variant']}: label {row['seconds_labelling']:.1f} s, "
                f"train {row['seconds_training']:.1f} s, chamfer {row['chamfer_percent']:.4f} %, "
                f"hausdorff {row['hausdorff_percent']:.2f} %, max|g| "
                f"{row['max_gradient_norm']:.4f}, slope {row['median_slope']:.3f}",
                flush=True,
            )
            if vi == 0:
                path = Path(args.out) / f"{name}_high.lipsdf"
                field.save(path)
                out["fields"][name] = str(path)
    out["train"] = rows


def sec_extract(args, out):
    from lipsdf_blender.core.fields.field import Field
    from lipsdf_blender.core.surfaces.extract import extract

    rows = []
    for name in args.meshes:
        path = out.get("fields", {}).get(name) or str(Path(args.out) / f"{name}_high.lipsdf")
        if not Path(path).exists():
            continue
        field = Field.load(path)
        fpp = flop_per_point(field.net.depth, field.net.width)
        for res in args.resolutions:
            if name != args.meshes[0] and res not in (512,):
                continue
            times = []
            for _ in range(2):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                r = extract(field, 0.0, resolution=res, device="cuda", batch_size=args.batch)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "mesh": name,
                    "resolution": res,
                    "seconds_cold": times[0],
                    "seconds": times[1],
                    "evaluations": r.stats.evaluations,
                    "evals_percent": 100.0 * r.stats.evaluations / (res + 1) ** 3,
                    "faces": len(r.faces),
                    "network_tflop": r.stats.evaluations * fpp / 1e12,
                    "tflops_whole_call": r.stats.evaluations * fpp / times[1] / 1e12,
                }
            )
            print("extract:", rows[-1], flush=True)
    out["extract"] = rows


def sec_reference(args, out):
    from bench_vs_reference import chamfer, held_out, hkr_eval
    from reference_recipe import ReferenceNet, reference_field, reference_samples, train_reference

    name = args.meshes[0]
    geom = _load_mesh(args, name)
    t0 = time.perf_counter()
    Xi, Xo = reference_samples(geom, seed=args.seed)
    t_label = time.perf_counter() - t0
    snaps = []

    def on_snapshot(elapsed, epoch, step, net):
        snaps.append(
            (t_label + elapsed, epoch, step, {k: v.clone() for k, v in net.state_dict().items()})
        )

    times = [t for t in (5, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300) if t < args.ref_cap]
    _, curve = train_reference(
        Xi, Xo, args.ref_cap, times, seed=args.seed, device="cuda", on_snapshot=on_snapshot
    )
    X, y, ref_scale = held_out(geom, seed=args.seed + 1)
    pts = []
    for t, epoch, step, state in snaps:
        net = ReferenceNet()
        net.load_state_dict({k: v.cpu() for k, v in state.items()})
        f = reference_field(net, geom)
        pts.append(
            {
                "t": t,
                "epoch": epoch,
                "step": step,
                "hkr": hkr_eval(f, X, y, ref_scale),
                "chamfer": chamfer(f, geom, 192, torch.device("cuda")),
            }
        )
        print("reference:", pts[-1], flush=True)
    ours = [r for r in out.get("train", []) if r["mesh"] == name]
    res = {
        "mesh": name,
        "cap": args.ref_cap,
        "labelling_s": t_label,
        "curve": curve,
        "snapshots": pts,
    }
    if ours:
        from lipsdf_blender.core.fields.field import Field

        f = Field.load(out["fields"][name])
        res["ours_hkr"] = hkr_eval(f, X, y, ref_scale)
        res["ours_chamfer_192"] = chamfer(f, geom, 192, torch.device("cuda"))
        res["ours_seconds"] = ours[0]["seconds_labelling"] + ours[0]["seconds_training"]
        reach = [p["t"] for p in pts if p["chamfer"] <= res["ours_chamfer_192"]]
        res["ref_seconds_to_ours_chamfer"] = reach[0] if reach else None
    out["reference"] = res


SECTIONS = {
    "env": sec_env,
    "peak": sec_peak,
    "steps": sec_steps,
    "check": sec_check,
    "train": sec_train,
    "extract": sec_extract,
    "reference": sec_reference,
}


def summary(out) -> None:
    print("\n## summary")
    if "peak" in out:
        print("peak:", {k: round(v, 1) for k, v in out["peak"].items()})
    for r in out.get("steps", []):
        print(
            f"| step | batch {r['batch']} | graph {r['graph']} | {r['precision']} | "
            f"{r['ms_per_step']:.3f} ms | {r['tflops']:.2f} TFLOP/s |"
        )
    for r in out.get("train", []):
        print(
            f"| train | {r['mesh']} | {r['variant']} | label {r['seconds_labelling']:.1f} s | "
            f"train {r['seconds_training']:.1f} s | chamfer {r['chamfer_percent']:.4f} % | "
            f"hausdorff {r['hausdorff_percent']:.2f} % | max|g| {r['max_gradient_norm']:.4f} |"
        )
    for r in out.get("extract", []):
        print(
            f"| extract | {r['mesh']} | {r['resolution']} | {r['seconds']:.2f} s (cold "
            f"{r['seconds_cold']:.2f}) | evals {r['evals_percent']:.2f} % | "
            f"{r['tflops_whole_call']:.2f} TFLOP/s |"
        )
    if "reference" in out:
        r = out["reference"]
        print("reference:", {k: v for k, v in r.items() if k not in ("curve", "snapshots")})
    if "check" in out:
        print("check:", out["check"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--mesh-dir", default=str(HERE.parents[1] / "shared" / "meshes"))
    p.add_argument("--meshes", default="spot,stanford-bunny,fandisk")
    p.add_argument(
        "--variants",
        default="",
        help="';'-separated JSON preset overrides to try besides the plain high preset",
    )
    p.add_argument("--resolutions", default="128,256,512,1024")
    p.add_argument("--batch", type=int, default=1 << 18, help="extraction batch size")
    p.add_argument("--ref-cap", type=float, default=90.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="gpu_out")
    args = p.parse_args(argv)
    args.meshes = [m for m in args.meshes.split(",") if m]
    args.variants = [""] + [v for v in args.variants.split(";") if v.strip()]
    args.resolutions = [int(r) for r in args.resolutions.split(",") if r]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    out: dict = {"args": {k: v for k, v in vars(args).items()}}
    t_all = time.perf_counter()
    for name in args.sections.split(","):
        t0 = time.perf_counter()
        try:
            SECTIONS[name](args, out)
        except Exception:  # one failing section must not lose the others' numbers
            out.setdefault("errors", {})[name] = traceback.format_exc()
            print(f"section {name} failed:\n{traceback.format_exc()}", flush=True)
        out.setdefault("section_seconds", {})[name] = time.perf_counter() - t0
        (Path(args.out) / "gpu.json").write_text(json.dumps(out, indent=1, default=str))
    out["seconds"] = time.perf_counter() - t_all
    (Path(args.out) / "gpu.json").write_text(json.dumps(out, indent=1, default=str))
    summary(out)
    return 0 if "errors" not in out else 1


if __name__ == "__main__":
    raise SystemExit(main())
