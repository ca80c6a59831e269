"""Training a 1-Lipschitz distance field with the hinge-Kantorovich-Rubinstein (hKR) loss.

    loss = E[-y f(x)] + lam * E[max(0, m - y f(x))]

with ``y = +1`` outside and ``-1`` inside. Over 1-Lipschitz functions its minimiser is the signed
distance up to the margin ``m`` (Coiffier & Béthune 2024), so no ground-truth distance is needed:
only inside/outside labels, which the generalised winding number gives for meshes, soups and
point clouds. ``lam`` ramps up over the first part of training (the KR term alone first spreads
the field out like a distance, then the hinge sharpens the zero level set).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from ..device import describe, pick_device
from ..errors import BadInputError, CancelledError
from ..fields.detail import CloudSurface, InputSurface
from ..fields.field import Field
from ..fields.network import LipschitzMLP, gram_matrices
from ..inputs.geometry import Geometry
from ..phases import phase
from . import warm
from .presets import DEFAULT_PRESET, Preset, get_preset
from .sampling import make_samples, normalization

log = logging.getLogger("lipsdf.train")


@dataclass
class Progress:
    """What a progress callback receives."""

    step: int
    total: int
    loss: float
    elapsed: float
    eta: float
    device: str
    phase: str = "train"


def hkr_loss(f: torch.Tensor, y: torch.Tensor, margin: float, lam: float) -> torch.Tensor:
    """hKR loss ``E[-y f] + lam E[max(0, m - y f)]`` for values ``f (n,)``, labels ``y (n,)``."""
    yf = y * f
    return -yf.mean() + lam * torch.relu(margin - yf).mean()


def train_field(
    geom: Geometry,
    preset: str | Preset = DEFAULT_PRESET,
    mode: str = "signed",
    device: str = "auto",
    seed: int = 0,
    thickness: float | None = None,
    progress=None,
    cancel=None,
    on_step=None,
    normals: str = "auto",
    noise: float | None = None,
    init: Field | None = None,
    reuse_labels: bool = True,
    **overrides,
) -> Field:
    """Train a field for ``geom`` and return it in the geometry's units.

    Parameters
    ----------
    geom : Geometry
        A mesh, soup or point cloud (signed or unsigned mode) or a curve (unsigned only).
    preset : {"fast", "balanced", "high"} or Preset
        Default: :data:`~.presets.DEFAULT_PRESET`.
    mode : {"signed", "unsigned"}
    device : {"auto", "cpu", "cuda", "mps"}
    seed : int
        Same seed, same samples and same initial weights.
    thickness : float, optional
        Unsigned mode: half-thickness of the shell around the geometry, object units
        (default: the preset's margin).
    progress : callable(Progress), optional
        Called at most a few times a second and once at the end.
    cancel : callable() -> bool, optional
        Checked at every step (steps take far less than a second); True raises
        :class:`CancelledError`.
    on_step : callable(step: int, net: LipschitzMLP), optional
        Called after every optimiser step with the network being trained (benchmarks take
        snapshots with it; it must not change the network).
    normals : {"auto", "estimate"}
        Point clouds: use the cloud's own normals when it has them (their signs are still
        checked), or always estimate them.
    noise : float, optional
        Point clouds: the points' noise (standard deviation, object units); ``None``: estimated.
    init : Field, optional
        The field of the input's previous version (a warm start, :mod:`.warm`): when it has
        the same depth, width, mode and input kind and the new input fits its box, training
        starts from its weights in its normalisation and runs ``warm_fraction`` of the
        steps. Otherwise training starts from scratch; ``record["warm_start"]`` says which
        and why (``None`` without ``init``). Never fails because of ``init``.
    reuse_labels : bool
        Warm start of a mesh: keep the labels of the old training's samples (when this
        process still has them) except where the moved faces can have changed them.
    **overrides
        Any :class:`Preset` attribute (``steps``, ``depth``, ...).

    Returns
    -------
    Field
    """
    geom = geom.validate()
    if mode not in ("signed", "unsigned"):
        raise BadInputError(f"unknown mode {mode!r}; use 'signed' or 'unsigned'")
    if geom.kind == "curve" and mode == "signed":
        raise BadInputError("a curve encloses no volume; train it in unsigned mode")
    p = get_preset(preset, **overrides)
    dev = pick_device(device)
    t_start = time.perf_counter()
    start, warm_record = None, None
    if init is not None:
        given = None if thickness is None else float(thickness)
        if mode == "unsigned" and given is None:
            given = p.margin / init.scale
        start, reason = warm.check(init, geom, mode, p.depth, p.width, given)
        source = str((init.record or {}).get("input_hash", ""))
        if start is None:
            log.info("warm start refused, training from scratch: %s", reason)
            warm_record = {"used": False, "from": source, "reason": reason}
    if start is not None:
        center, scale = start.center, start.scale
    else:
        center, scale = normalization(geom)
    geom_n = Geometry(
        geom.kind,
        (geom.vertices - center) * scale,
        geom.faces,
        geom.normals,
        geom.edges,
    )
    margin = p.margin
    if mode == "unsigned":
        margin = p.margin if thickness is None else float(thickness) * scale
        if margin <= 0:
            raise BadInputError("the thickness must be positive")
    steps = p.steps
    if start is not None:
        steps = max(1, round(p.warm_fraction * p.steps))
    report = _Reporter(progress, steps, describe(dev))
    report.phase("label")
    samples, label_stats, edit = None, {}, None
    if start is not None:
        edit, why = warm.find_edit(init.surface, geom_n, center, scale)
        if mode != "signed":
            why = f"{mode} fields are labelled again"
        elif not reuse_labels:
            why = "reuse_labels is off"
        elif edit is not None:
            kept = warm.MEMO.get(warm.MEMO.key(start.source, mode, center, scale))
            samples, label_stats = warm.relabel(kept, edit, geom_n, p.samples, seed, cancel)
        if not label_stats:
            label_stats = {"labels": "recomputed", "labels_reason": why}
    if samples is None:
        # the extraction grid spans the normalised [-1, 1]: half a cell is 1 / resolution
        config = p.samples
        if not config.cloud_cell:
            config = replace(config, cloud_cell=1 / p.resolution)
        samples = make_samples(
            geom_n,
            mode,
            config,
            seed=seed,
            thickness=2 * margin,
            cancel=cancel,
            normals=normals,
            noise=None if noise is None else float(noise) * scale,
        )
    if geom.kind == "mesh" and mode == "signed":
        key = warm.MEMO.key(geom.content_hash(), mode, center, scale)
        warm.MEMO.put(key, samples, p.samples)
    if start is not None:
        run = replace(p, steps=steps)
        focused = warm.focus(samples, edit, p.warm_focus, max(p.samples.sigmas, default=0.0))
        net, curve, t_train = _optimise(
            focused, run, margin, dev, seed, report, cancel, on_step, start=start.net
        )
        warm_record = {
            "used": True,
            "from": start.source,
            "steps": steps,
            "cold_steps": p.steps,
            "samples": int(len(samples.labels)),
            "relabelled": int(label_stats.get("relabelled", len(samples.labels))),
            **label_stats,
        }
        log.info(
            "warm start from %s: %d steps, %d of %d samples relabelled",
            start.source[:12],
            steps,
            warm_record["relabelled"],
            warm_record["samples"],
        )
    else:
        net, curve, t_train = _optimise(samples, p, margin, dev, seed, report, cancel, on_step)
    net = net.cpu()
    lo, hi = geom.bounds()
    if samples.prepared is not None:
        # A cloud's closure may reach past its points (a base never scanned): the field's
        # box holds every point labelled inside too, so extraction does not clip it.
        inner = samples.points[samples.labels < 0].astype(np.float64) / scale + center
        if len(inner):
            lo, hi = np.minimum(lo, inner.min(axis=0)), np.maximum(hi, inner.max(axis=0))
    record = {
        "input_hash": geom.content_hash(),
        "input_kind": geom.kind,
        "preset": p.name,
        "settings": _settings(p),
        "mode": mode,
        "margin": margin / scale,
        "seed": seed,
        "device": describe(dev),
        "samples": int(len(samples.labels)),
        "seconds_labelling": round(samples.seconds, 3),
        "seconds_training": round(t_train, 3),
        "cloud": _cloud_record(samples.prepared, scale),
        "seconds": round(time.perf_counter() - t_start, 3),
        "final_loss": curve[-1][1] if curve else None,
        "loss_curve": curve,
        "torch": torch.__version__,
        "warm_start": warm_record,
    }
    surface = InputSurface.from_geometry(geom)
    c = samples.prepared
    if c is not None and len(c.points) >= 8:  # back to object units
        surface = CloudSurface(c.points / scale + center, c.normals, c.areas / scale**2)
    return Field(net, center, scale, lo, hi, mode, record, surface)


def train_with(geom: Geometry, options, progress=None, cancel=None) -> Field:
    """:func:`train_field` with the settings a command line or a batch carries as attributes
    of ``options``: ``preset``, ``mode`` (None: unsigned for curves, else signed),
    ``device``, ``seed``, ``thickness``, ``normals``, ``noise`` and ``steps`` (None or 0:
    the preset's)."""
    overrides = {"steps": options.steps} if options.steps else {}
    return train_field(
        geom,
        options.preset,
        mode=options.mode or ("unsigned" if geom.kind == "curve" else "signed"),
        device=options.device,
        seed=options.seed,
        thickness=options.thickness,
        progress=progress,
        cancel=cancel,
        normals=options.normals,
        noise=options.noise,
        **overrides,
    )


def _cloud_record(prepared, scale: float) -> dict | None:
    """A prepared cloud's report with its noise level back in object units."""
    if prepared is None:
        return None
    return {**prepared.report, "noise": prepared.report["noise"] / scale}


def _settings(p: Preset) -> dict:
    d = asdict(p)
    d["samples"]["sigmas"] = list(d["samples"]["sigmas"])
    return d


class _Reporter:
    """Throttles progress callbacks to a few per second and estimates the time left.

    The first steps carry one-off costs (allocation, cache warm-up, a CUDA graph's capture),
    so an estimate from the time since the start says "an hour" for a 40-second job. The ETA
    is therefore the recent step rate (over the last :attr:`WINDOW` seconds) applied to the
    steps left, and there is none (NaN) until :attr:`MIN_SECONDS` and :attr:`MIN_STEPS` have
    passed since the first report. ``clock`` is for tests.
    """

    WINDOW = 5.0
    MIN_SECONDS = 0.5
    MIN_STEPS = 5

    def __init__(self, callback, total, device_name, interval=0.25, clock=time.perf_counter):
        self.callback, self.total, self.device = callback, total, device_name
        self.clock = clock
        self.interval, self.t0, self.last = interval, clock(), -1e9
        self.marks: list[tuple[float, int]] = []  # (time, step), oldest first; a few dozen
        self.first: tuple[float, int] | None = None

    def phase(self, name: str) -> None:
        if self.callback is not None:
            self.callback(Progress(0, self.total, math.nan, 0.0, math.nan, self.device, name))

    def eta(self, now: float, step: int) -> float:
        """Seconds left after ``step`` at ``now`` (NaN while too early to tell)."""
        if self.first is None:
            self.first = (now, step)
        self.marks.append((now, step))
        # Keep one mark at or before the window's start as the reference.
        while len(self.marks) > 2 and self.marks[1][0] <= now - self.WINDOW:
            del self.marks[0]
        t_first, s_first = self.first
        if now - t_first < self.MIN_SECONDS or step - s_first < self.MIN_STEPS:
            return math.nan
        t_ref, s_ref = self.marks[0]
        if step <= s_ref or now <= t_ref:
            return math.nan
        return (now - t_ref) / (step - s_ref) * (self.total - step)

    def __call__(self, step: int, loss: float, force: bool = False) -> None:
        if self.callback is None:
            return
        now = self.clock()
        eta = self.eta(now, step)
        if not force and now - self.last < self.interval:
            return
        self.last = now
        self.callback(Progress(step, self.total, loss, now - self.t0, eta, self.device))


def _off_orthogonality(W: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared off-diagonal of the normalised Gram matrices ``W^T W`` of all layers
    (``gram``: :func:`gram_matrices` of ``W`` when the caller has it)."""
    if gram is None:
        gram = gram_matrices(W)
    norms = torch.diagonal(gram, dim1=1, dim2=2).clamp_min(1e-24).sqrt()  # column norms
    G = gram / (norms[:, :, None] * norms[:, None, :])
    eye = torch.eye(G.shape[-1], device=G.device, dtype=G.dtype)
    return ((G - eye) ** 2).sum(dim=(1, 2)).mean()


@phase("train")
def _optimise(
    samples, p: Preset, margin: float, dev, seed: int, report, cancel, on_step=None, start=None
):
    """Adam on random batches of the labelled samples; returns (net, loss curve, seconds).

    ``start`` (a network of the same depth and width) is a warm start: its weights are copied
    and the schedule is :func:`.warm.schedule` with ``lam`` at full weight from the start.
    """
    if p.precision not in PRECISIONS:
        raise BadInputError(
            f"unknown precision {p.precision!r}; use one of {', '.join(PRECISIONS)}"
        )
    torch.manual_seed(seed)
    net = LipschitzMLP(p.depth, p.width, p.bias_shift)
    if start is not None:
        net.load_state_dict(start.state_dict())
    net = net.to(dev)
    X = torch.from_numpy(samples.points).to(dev)
    Y = torch.from_numpy(samples.labels).to(dev)
    step_fn = _Step(net, X, Y, p, margin, dev, seed)
    lam_ramp = max(1, int(p.lam_warmup * p.steps))
    curve: list[list[float]] = []
    every = max(1, p.steps // 200)
    report.t0 = time.perf_counter()
    with _matmul_precision(dev, p.precision):
        for step in range(p.steps):
            if cancel is not None and cancel():
                raise CancelledError("training was cancelled")
            if start is not None:
                lr, lam = warm.schedule(step, p.steps, p.lr * p.warm_lr, p.lr_final), p.lam
            else:
                frac = step / max(p.steps - 1, 1)
                lr = p.lr_final + 0.5 * (p.lr - p.lr_final) * (1 + math.cos(math.pi * frac))
                lam = p.lam * min(1.0, (step + 1) / lam_ramp)
            loss = step_fn(lr, lam)
            if on_step is not None:
                on_step(step + 1, net)
            if step % every == 0 or step == p.steps - 1:
                value = float(loss)
                if not math.isfinite(value):
                    raise BadInputError("training diverged (loss is not finite); try another seed")
                curve.append([step, value])
                report(step + 1, value, force=step == p.steps - 1)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - report.t0
    if not curve:
        raise BadInputError("no training step ran; steps must be at least 1")
    return net, curve, seconds


PRECISIONS = ("fp32", "tf32", "bf16")


class _matmul_precision:
    """Allow TF32 matrix products on CUDA inside the block (``tf32``), then restore."""

    def __init__(self, dev, precision: str):
        self.on = dev.type == "cuda" and precision == "tf32"

    def __enter__(self):
        if self.on:
            self.saved = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = True

    def __exit__(self, *exc):
        if self.on:
            torch.backends.cuda.matmul.allow_tf32 = self.saved


class Adam:
    """Adam (Kingma & Ba 2015) with torch's defaults and arithmetic, for eager steps.

    ``torch.optim.Adam`` imports ``torch._dynamo`` when it is made (0.7-1 s of a 2-core CPU,
    in every process that trains), so the steps that run eagerly use this;
    the CUDA-graph path keeps torch's capturable Adam. ``param_groups`` and ``zero_grad``
    behave as torch's do for one group.
    """

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = [q for q in params if q.requires_grad]
        self.param_groups = [{"lr": float(lr)}]
        self.betas, self.eps, self.steps = betas, eps, 0
        self.m = [torch.zeros_like(q) for q in self.params]
        self.v = [torch.zeros_like(q) for q in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for q in self.params:
            q.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.steps += 1
        step_size = self.param_groups[0]["lr"] / (1 - b1**self.steps)
        root2 = math.sqrt(1 - b2**self.steps)
        for q, m, v in zip(self.params, self.m, self.v, strict=True):
            if q.grad is None:
                continue
            m.lerp_(q.grad, 1 - b1)
            v.mul_(b2).addcmul_(q.grad, q.grad, value=1 - b2)
            q.addcdiv_(m, (v.sqrt() / root2).add_(self.eps), value=-step_size)


class _Step:
    """One Adam step on a random batch, ``step(lr, lam) -> loss`` (a 0-d tensor, not synced).

    On the CPU it runs eagerly. On CUDA (with ``cuda_graph``) the first steps run eagerly on a
    side stream to warm up the allocator and cuBLAS, then one step is captured in a CUDA graph
    and every later step is a replay: the batch indices, ``lam`` and the learning rate live in
    device tensors that are written before each replay.
    """

    WARMUP = 3

    def __init__(self, net, X, Y, p: Preset, margin: float, dev, seed: int):
        self.net, self.X, self.Y, self.p, self.margin, self.dev = net, X, Y, p, margin, dev
        self.gen = torch.Generator(device=dev).manual_seed(seed)
        self.graphed = dev.type == "cuda" and p.cuda_graph
        self.bf16 = dev.type == "cuda" and p.precision == "bf16"
        self.idx = torch.empty(p.batch_size, dtype=torch.long, device=dev)
        self.lam = torch.zeros((), device=dev)
        if self.graphed:
            self.opt = torch.optim.Adam(
                net.parameters(), lr=torch.tensor(p.lr, device=dev), capturable=True, foreach=True
            )
        else:
            self.opt = Adam(net.parameters(), lr=p.lr)
        self.graph = None
        self.calls = 0

    def _body(self) -> torch.Tensor:
        x, y = self.X[self.idx], self.Y[self.idx]
        gram = gram_matrices(self.net.W)  # shared by the layers' T and the penalty
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            f = self.net(x, gram)
        loss = hkr_loss(f.float(), y, self.margin, self.lam)
        if self.p.ortho > 0:
            loss = loss + self.p.ortho * _off_orthogonality(self.net.W, gram)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def __call__(self, lr: float, lam: float) -> torch.Tensor:
        torch.randint(
            0, len(self.Y), (self.p.batch_size,), generator=self.gen, out=self.idx, device=self.dev
        )
        self.lam.fill_(lam)
        for g in self.opt.param_groups:
            if isinstance(g["lr"], torch.Tensor):
                g["lr"].fill_(lr)
            else:
                g["lr"] = lr
        self.calls += 1
        if not self.graphed:
            self.opt.zero_grad(set_to_none=True)
            return self._body()
        if self.graph is None and self.calls <= self.WARMUP:
            side = torch.cuda.Stream(self.dev)
            side.wait_stream(torch.cuda.current_stream(self.dev))
            with torch.cuda.stream(side):
                self.opt.zero_grad(set_to_none=True)
                loss = self._body()
            torch.cuda.current_stream(self.dev).wait_stream(side)
            return loss
        if self.graph is None:
            self.opt.zero_grad(set_to_none=True)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self._body()
        self.graph.replay()
        return self.loss
