"""The reference recipe, rewritten in our own code, as the baseline of the speed benchmarks.

This is the training recipe of Coiffier & Béthune, "1-Lipschitz Neural Distance Fields"
(repository GCoiffier/1-Lipschitz-Neural-Distance-Fields, ``train_lip.py`` with its defaults
and ``extract_dataset_surface_mesh.py -mode signed``), written from its description, not
copied. What is kept exactly, because it decides the cost and the result:

- frame: the mesh scaled so its longest side is 1, then centred on its mean vertex;
- samples: 100k inside and 100k outside points, drawn from a mixture of the mesh's box padded
  by 0.05 (weight 200) and padded by 1.0 (weight 5), labelled by the fast winding number
  (> 0.5 inside); taking the first 100k of each class of a shuffled mixture is the same as
  drawing from the mixture conditioned on the class, which is what :func:`reference_samples`
  does, without labelling the reference's 20.5M candidates;
- network: zero-padding to 128, 20 SLL layers of width 128 (``W`` Xavier-normal, ``q`` standard
  normal, bias uniform in +-1/sqrt(128)), a Frobenius-normalised linear read-out with bias;
  every layer recomputes its ``T`` on every forward call, one layer at a time;
- optimisation: Adam, lr 5e-4, no schedule; each step takes a batch of 200 inside and a batch of
  200 outside points (two forward calls), an epoch is one shuffled pass (500 steps);
- loss: per point ``relu(m - y f) + (1/lam) * mean(-y f)`` summed over both batches, margin
  ``m = 0.01`` (reference frame), ``lam`` = 1 in epochs 1-4, 10 in epochs 5-9, 100 from epoch 10.

A trained :class:`ReferenceNet` converts exactly to our :class:`LipschitzMLP` (``W_ours =
W_ref^T``), so both trainers' fields are evaluated and extracted by the same code.
"""

from __future__ import annotations

import math
import time

import igl
import numpy as np
import torch
from torch import nn

from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.fields.network import LipschitzMLP
from lipsdf_blender.core.inputs.geometry import Geometry

DEPTH, WIDTH = 20, 128
BATCH = 200
LR = 5e-4
MARGIN = 1e-2
N_TRAIN = 100_000
PAD_NEAR, PAD_FAR = 0.05, 1.0
WEIGHT_NEAR, WEIGHT_FAR = 200, 5


def lam_for_epoch(epoch: int) -> float:
    """The reference's lambda schedule (epochs count from 1)."""
    if epoch >= 10:
        return 100.0
    if epoch >= 5:
        return 10.0
    return 1.0


def reference_frame(V: np.ndarray) -> tuple[np.ndarray, float]:
    """``(center, scale)`` with ``x_ref = (x - center) * scale``: longest side 1, mean at 0."""
    scale = 1.0 / float(np.max(V.max(axis=0) - V.min(axis=0)))
    return V.mean(axis=0), scale


def reference_samples(geom: Geometry, n: int = N_TRAIN, seed: int = 0):
    """Inside and outside training points in the reference frame, ``(n, 3)`` float32 each."""
    center, scale = reference_frame(geom.vertices)
    V = (geom.vertices - center) * scale
    F = np.ascontiguousarray(geom.faces, dtype=np.int64)
    lo, hi = V.min(axis=0), V.max(axis=0)
    rng = np.random.default_rng(seed)
    inside, outside = [], []
    n_in = n_out = 0
    p_near = WEIGHT_NEAR / (WEIGHT_NEAR + WEIGHT_FAR)
    while n_in < n or n_out < n:
        m = 4 * n
        near = rng.random(m) < p_near
        pad = np.where(near, PAD_NEAR, PAD_FAR)[:, None]
        X = (lo - pad) + rng.random((m, 3)) * (hi - lo + 2 * pad)
        wn = igl.fast_winding_number(V, F, X)
        inside.append(X[wn > 0.5])
        outside.append(X[wn <= 0.5])
        n_in += len(inside[-1])
        n_out += len(outside[-1])
    Xi = np.concatenate(inside)[:n].astype(np.float32)
    Xo = np.concatenate(outside)[:n].astype(np.float32)
    return Xi, Xo


class ReferenceSLL(nn.Module):
    """One SLL layer that computes its own ``T`` at every call (the reference's cost model)."""

    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(nn.init.xavier_normal_(torch.empty(d, d)))
        bound = 1.0 / math.sqrt(d)
        self.bias = nn.Parameter(torch.empty(d).uniform_(-bound, bound))
        self.q = nn.Parameter(torch.randn(d))

    def inv_t(self) -> torch.Tensor:
        g = (self.weight @ self.weight.T).abs()
        t = (g * torch.exp(self.q)[None, :]).sum(dim=1) * torch.exp(-self.q)
        return torch.where(t > 0, 1.0 / t, torch.zeros_like(t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.relu(x @ self.weight.T + self.bias) * self.inv_t()
        return x - 2.0 * (z @ self.weight)


class ReferenceNet(nn.Module):
    """Zero padding, ``depth`` :class:`ReferenceSLL` layers, Frobenius-normalised read-out."""

    def __init__(self, depth: int = DEPTH, width: int = WIDTH):
        super().__init__()
        self.width = width
        self.layers = nn.ModuleList(ReferenceSLL(width) for _ in range(depth))
        w = torch.empty(1, width)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        self.w_out = nn.Parameter(w.reshape(-1))
        self.b_out = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.pad(x, (0, self.width - x.shape[1]))
        for layer in self.layers:
            h = layer(h)
        return h @ (self.w_out / self.w_out.norm()) + self.b_out

    def to_lipschitz_mlp(self) -> LipschitzMLP:
        """The same function as our training-form network."""
        net = LipschitzMLP(len(self.layers), self.width)
        with torch.no_grad():
            net.W.copy_(torch.stack([layer.weight.T for layer in self.layers]))
            net.b.copy_(torch.stack([layer.bias for layer in self.layers]))
            net.q.copy_(torch.stack([layer.q for layer in self.layers]))
            net.w_out.copy_(self.w_out)
            net.b_out.copy_(self.b_out)
        return net


def reference_field(net: ReferenceNet, geom: Geometry) -> Field:
    """Wrap a reference network (reference frame) as a :class:`Field` in object units."""
    center, scale = reference_frame(geom.vertices)
    lo, hi = geom.bounds()
    return Field(net.to_lipschitz_mlp(), center, scale, lo, hi, "signed", {})


def hkr_reference(f_in: torch.Tensor, f_out: torch.Tensor, lam: float, margin: float = MARGIN):
    """The reference's summed loss over one inside batch and one outside batch."""
    y_in, y_out = -f_in, f_out
    return (torch.relu(margin - y_in) + (-y_in).mean() / lam).sum() + (
        torch.relu(margin - y_out) + (-y_out).mean() / lam
    ).sum()


def train_reference(
    Xi: np.ndarray,
    Xo: np.ndarray,
    seconds: float,
    snapshot_times=(),
    seed: int = 0,
    device: str = "cpu",
    on_snapshot=None,
):
    """Run the reference recipe for ``seconds`` of wall time (snapshots excluded).

    ``on_snapshot(elapsed, epoch, step, net)`` is called at each time in ``snapshot_times``
    (and at the end); its own time is not counted. Returns the network and a list of
    ``(elapsed, epoch, step, mean batch loss since the previous record)``.
    """
    torch.manual_seed(seed)
    dev = torch.device(device)
    net = ReferenceNet().to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    Xi_t, Xo_t = torch.from_numpy(Xi).to(dev), torch.from_numpy(Xo).to(dev)
    times = sorted(snapshot_times)
    k = 0
    curve = []
    elapsed, epoch, step = 0.0, 0, 0
    acc, nacc = 0.0, 0
    t0 = time.perf_counter()
    done = False
    while not done:
        epoch += 1
        lam = lam_for_epoch(epoch)
        pi = torch.randperm(len(Xi_t), device=dev)
        po = torch.randperm(len(Xo_t), device=dev)
        for s in range(0, min(len(pi), len(po)) - BATCH + 1, BATCH):
            loss = hkr_reference(net(Xi_t[pi[s : s + BATCH]]), net(Xo_t[po[s : s + BATCH]]), lam)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            acc += float(loss.detach())
            nacc += 1
            now = time.perf_counter()
            elapsed_now = elapsed + (now - t0)
            if (k < len(times) and elapsed_now >= times[k]) or elapsed_now >= seconds:
                elapsed = elapsed_now
                curve.append((elapsed, epoch, step, acc / max(nacc, 1)))
                acc, nacc = 0.0, 0
                if on_snapshot is not None:
                    on_snapshot(elapsed, epoch, step, net)
                while k < len(times) and times[k] <= elapsed:
                    k += 1
                if elapsed >= seconds:
                    done = True
                    break
                t0 = time.perf_counter()
    return net, curve
