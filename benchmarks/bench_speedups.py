"""CPU before/after of each speed-up, one variable at a time (20 x 128 SLL network).

Run on one pinned core so the two sides of each row share the same conditions::

    taskset -c 1 env PYTHONPATH=. .venv/bin/python benchmarks/bench_speedups.py --threads 1

Rows (each a median of ``--repeats`` timed runs):

- T per layer per forward call (the reference) vs T for all layers in one batched product per
  step (ours), a training step of 400 points, and 2 x 200 points in two calls (the reference's
  step) vs 400 points in one call;
- the training form (T recomputed) vs the folded form at inference;
- folded form: one large batch vs cache-sized blocks with fused ``addmm``;
- training step cost and points per second against the batch size.

The extraction before/after is ``bench_scaling.py --extract`` run on two checkouts.
The GPU rows (eager vs CUDA graph, fp32 / tf32 / bf16) are in ``bench_gpu.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lipsdf_blender.core.fields.network as network
from lipsdf_blender.core.fields.network import LipschitzMLP  # noqa: E402
from lipsdf_blender.core.training.train import _off_orthogonality, hkr_loss  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "speedups.json"
D, W = 20, 128
FWD = D * 4 * W * W  # forward FLOPs per point


class PerLayerT(torch.nn.Module):
    """Our network with the reference's cost model: each layer computes its own T per call."""

    def __init__(self, net: LipschitzMLP):
        super().__init__()
        self.net = net

    def forward(self, x):
        n = self.net
        h = n.pad(x)
        for i in range(n.depth):
            Wi, qi = n.W[i], n.q[i]
            g = (Wi.T @ Wi).abs()
            t = (g * torch.exp(qi)[None, :]).sum(dim=1) * torch.exp(-qi)
            z = torch.relu(torch.addmm(n.b[i], h, Wi)) * (2.0 / (t + 1e-8))
            h = h - z @ Wi.T
        return h @ (n.w_out / n.w_out.norm()) + n.b_out


def median_time(fn, repeats: int, inner: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def train_step_fn(model, params, xs, ys, ortho=True):
    opt = torch.optim.Adam(params, lr=1e-4)

    def step():
        loss = sum(hkr_loss(model(x), y, 5e-3, 30.0) for x, y in zip(xs, ys, strict=True))
        if ortho:
            loss = loss + _off_orthogonality(model_net(model).W)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def model_net(model):
    return model.net if isinstance(model, PerLayerT) else model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []

    def row(name, before, after, flop=None, note=""):
        r = {"what": name, "before_ms": 1e3 * before, "after_ms": 1e3 * after}
        r["speedup"] = before / after
        if flop:
            r["before_gflops"] = flop / before / 1e9
            r["after_gflops"] = flop / after / 1e9
        r["note"] = note
        rows.append(r)
        print(
            f"| {name} | {1e3 * before:.2f} ms | {1e3 * after:.2f} ms | {before / after:.2f}× | "
            + (f"{flop / before / 1e9:.1f} → {flop / after / 1e9:.1f} GFLOP/s |" if flop else "|"),
            flush=True,
        )

    print(f"threads {args.threads}, torch {torch.__version__}\n")
    print("| what | before | after | speed-up | GFLOP/s |\n|---|---|---|---|---|")
    net = LipschitzMLP(D, W, 0.3)
    x400 = torch.rand(400, 3) * 2 - 1
    y400 = torch.sign(torch.randn(400))
    per_layer = PerLayerT(net)
    before = median_time(
        train_step_fn(per_layer, net.parameters(), [x400], [y400]), args.repeats, 10
    )
    after = median_time(train_step_fn(net, net.parameters(), [x400], [y400]), args.repeats, 10)
    row("train step, 400 pts: T per layer → T stacked", before, after, 3 * FWD * 400)
    xs, ys = [x400[:200], x400[200:]], [y400[:200], y400[200:]]
    before = median_time(train_step_fn(per_layer, net.parameters(), xs, ys), args.repeats, 10)
    row(
        "train step: reference (2 calls × 200, T per layer per call) → ours",
        before,
        after,
        3 * FWD * 400,
    )

    with torch.no_grad():
        x = torch.rand(2048, 3) * 2 - 1
        folded = net.folded()
        before = median_time(lambda: net(x), args.repeats, 10)
        after = median_time(lambda: folded(x), args.repeats, 10)
        row("inference 2048 pts: training form → folded", before, after, FWD * 2048)
        xb = torch.rand(131072, 3) * 2 - 1
        block = network.CPU_BLOCK_BYTES
        network.CPU_BLOCK_BYTES = 1 << 40  # one block: the whole batch

        def unfused():
            h = torch.nn.functional.pad(xb, (0, W - 3))
            for i in range(D):
                z = torch.relu(torch.addmm(folded.b[i], h, folded.W[i]))
                h = h - z @ folded.A[i]
            return h @ folded.w_out + folded.b_out

        before = median_time(unfused, max(2, args.repeats // 2), 1)
        network.CPU_BLOCK_BYTES = block
        after = median_time(lambda: folded(xb), max(2, args.repeats // 2), 1)
        row(
            "folded, 131072 pts: one batch → 2048-pt blocks + fused addmm",
            before,
            after,
            FWD * 131072,
        )

    print("\n| batch | ms per step | points/s | GFLOP/s |\n|---|---|---|---|")
    for b in (200, 1024, 4096, 8192):
        xb = torch.rand(b, 3) * 2 - 1
        yb = torch.sign(torch.randn(b))
        s = median_time(train_step_fn(net, net.parameters(), [xb], [yb]), args.repeats, 3)
        rows.append(
            {
                "what": "batch",
                "batch": b,
                "ms": 1e3 * s,
                "points_per_s": b / s,
                "gflops": 3 * FWD * b / s / 1e9,
            }
        )
        print(f"| {b} | {1e3 * s:.1f} | {b / s:,.0f} | {3 * FWD * b / s / 1e9:.1f} |", flush=True)

    n = 2048
    a, bm = torch.randn(n, n), torch.randn(n, n)
    s = median_time(lambda: a @ bm, 3, 2)
    peak = 2 * n**3 / s / 1e9
    rows.append({"what": "sgemm_peak_gflops", "value": peak, "threads": args.threads})
    print(f"\nmeasured sgemm {n}^3: {peak:.1f} GFLOP/s ({args.threads} threads)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
