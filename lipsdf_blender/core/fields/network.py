"""1-Lipschitz networks built from SDP-based Lipschitz layers (SLL, Araujo et al. 2023).

One SLL layer maps ``x`` (width ``d``) to

    x - 2 W T^-1 relu(W^T x + b),   T = diag_i( sum_j |(W^T W)_ij| exp(q_j - q_i) )

with parameters ``W (d, d)``, ``b (d,)`` and ``q (d,)``. For *every* parameter value the layer is
1-Lipschitz (``T - W^T W`` is diagonally dominant, hence positive semi-definite), so the whole
network is, and its gradient norm is at most 1 everywhere: it never overestimates a distance.

The 3-d input is zero-padded to the width (an isometry), and the read-out is ``w^T x / |w| + c``,
1-Lipschitz as well.

Training recomputes ``T`` once per forward call for all layers together (one batched matmul);
:meth:`LipschitzMLP.folded` precomputes ``2 W T^-1`` so that inference costs two plain matrix
products per layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Added to T before inverting it. A larger T only makes the layer more contractive, so the
#: bound still holds; it guards against a zero column of W.
_T_EPS = 1e-8
#: Bytes of one activation block when the inference network runs on the CPU: blocks of
#: ``CPU_BLOCK_BYTES / (4 width)`` points keep the activations in L2 between layers.
CPU_BLOCK_BYTES = 1 << 20


def gram_matrices(W: torch.Tensor) -> torch.Tensor:
    """``W^T W`` of stacked layers ``W (L, d, d)`` in float32, whatever autocast says.

    Training computes it once per step and shares it between :func:`sll_scales` and the
    orthogonality penalty.
    """
    with torch.autocast(W.device.type, enabled=False):
        W = W.float()
        return torch.bmm(W.transpose(1, 2), W)


def sll_scales(W: torch.Tensor, q: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
    """Return ``2 / T`` for stacked SLL layers.

    Parameters
    ----------
    W : (L, d, d) tensor
        Weights of ``L`` layers.
    q : (L, d) tensor
        The ``q`` parameters of the same layers.
    gram : (L, d, d) tensor, optional
        :func:`gram_matrices` of ``W`` when the caller has it already.

    Returns
    -------
    (L, d) tensor
        ``2 / T_i`` per layer and unit, computed in float32 whatever the input dtype.
    """
    # Under autocast the products would silently run in bf16/fp16; T must stay float32 so the
    # trained function is the one that is folded and evaluated in float32 afterwards.
    with torch.autocast(W.device.type, enabled=False):
        q = q.float()
        if gram is None:
            gram = gram_matrices(W)
        gram = gram.float().abs()  # (L, d, d): |W^T W|
        eq = torch.exp(q - q.max(dim=1, keepdim=True).values)  # same ratios, no overflow
        t = torch.einsum("lij,lj->li", gram, eq) / eq
        return 2.0 / (t + _T_EPS)


class LipschitzMLP(nn.Module):
    """A stack of SLL layers with a unit-norm linear read-out.

    Parameters
    ----------
    depth : int
        Number of SLL layers.
    width : int
        Width ``d`` of every layer; the 3-d input is zero-padded to it (``width >= 3``).
    bias_shift : float
        Subtracted from the initial biases (see the comment in ``__init__``).

    Examples
    --------
    >>> net = LipschitzMLP(depth=4, width=16)
    >>> net(torch.zeros(5, 3)).shape
    torch.Size([5])
    """

    def __init__(self, depth: int = 8, width: int = 64, bias_shift: float = 0.0):
        super().__init__()
        if depth < 1 or width < 3:
            raise ValueError("depth must be >= 1 and width >= 3")
        self.depth = depth
        self.width = width
        W = torch.empty(depth, width, width)
        for i in range(depth):
            # Orthogonal columns make W^T W diagonal, so T = W^T W exactly and each layer
            # starts as x - 2 U relu(U^T x + b'), a reflection on the active units: the
            # Jacobian is orthogonal and |grad f| = 1 from the first step. Random W gives
            # T >> W^T W and layers close to the identity, which learn distances slowly.
            nn.init.orthogonal_(W[i])
        self.W = nn.Parameter(W)
        bound = 1.0 / math.sqrt(width)
        # ``bias_shift > 0`` starts most units inactive, so each layer starts near the identity.
        # Deep stacks need it: 20 layers of 128 that all reflect at initialisation fold space
        # so often that training collapses the field's slope to ~0.05 (spot, 400 steps);
        # with a shift of 0.3 the slope reaches 0.5-0.8 in the same steps.
        self.b = nn.Parameter(torch.empty(depth, width).uniform_(-bound, bound) - bias_shift)
        self.q = nn.Parameter(torch.zeros(depth, width))
        # Start the read-out on the input's own coordinates: the padded dimensions carry
        # nothing at first, so a random unit vector would give |grad f| ~ sqrt(3 / width) and
        # training would spend most of its steps growing the gradient back towards 1.
        w = torch.randn(width) * 0.05
        w[:3] = torch.randn(3)
        self.w_out = nn.Parameter(w / w.norm())
        self.b_out = nn.Parameter(torch.zeros(()))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad ``(n, 3)`` points to ``(n, width)``."""
        return nn.functional.pad(x, (0, self.width - x.shape[1]))

    def forward(self, x: torch.Tensor, gram: torch.Tensor | None = None) -> torch.Tensor:
        """Evaluate at ``x (n, 3)`` (normalised units); returns ``(n,)``.

        ``gram``: :func:`gram_matrices` of ``W``, when the caller has computed it.
        """
        dt = x.dtype
        scales = sll_scales(self.W, self.q, gram).to(dt)
        W = self.W.to(dt)
        # -(2 W T^-1)^T of every layer in one product, so each layer is two addmm calls;
        # per-layer views come from unbind (indexing W[i] in the loop costs a full-size
        # gradient buffer per layer in the backward pass).
        neg_a = (W * -scales[:, None, :]).transpose(1, 2).contiguous()
        h = self.pad(x)
        for Wi, Ai, bi in zip(W.unbind(0), neg_a.unbind(0), self.b.to(dt).unbind(0), strict=True):
            z = torch.relu(torch.addmm(bi, h, Wi))
            h = torch.addmm(h, z, Ai)  # h - 2 W T^-1 z
        w = self.w_out.to(dt)
        return h @ (w / w.norm()) + self.b_out.to(x.dtype)

    def folded(self) -> FoldedMLP:
        """Return an inference-only copy with ``2 W T^-1`` precomputed (no autograd state)."""
        with torch.no_grad():
            scales = sll_scales(self.W, self.q)
            W = self.W.detach().float()
            A = (W * scales[:, None, :]).transpose(1, 2).contiguous()  # (L, d, d): (2 W T^-1)^T
            w = self.w_out.detach().float()
            return FoldedMLP(
                W.clone(), self.b.detach().float().clone(), A, w / w.norm(), self.b_out.detach()
            )


class FoldedMLP(nn.Module):
    """Inference form of :class:`LipschitzMLP`: each layer is two plain matrix products.

    Same function as the network it was folded from (up to float32 rounding); it is still
    differentiable with respect to its input, so gradients and projections work on it.
    """

    def __init__(self, W, b, A, w_out, b_out):
        super().__init__()
        self.register_buffer("W", W)
        self.register_buffer("b", b)
        self.register_buffer("A", A)
        self.register_buffer("w_out", w_out)
        self.register_buffer("b_out", b_out.float().reshape(()))
        self.width = W.shape[1]
        self.depth = W.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Evaluate at ``x (n, 3)`` (normalised units); returns ``(n,)``."""
        block = max(256, CPU_BLOCK_BYTES // (4 * self.width))
        if x.device.type == "cpu" and len(x) > block:
            # A (n, width) activation of a large batch falls out of the cache between layers and
            # every layer streams it from memory; blocks whose activations stay in L2 run 2.6x
            # faster on one core, at the measured sgemm rate (benchmarks/bench_speedups.py).
            return torch.cat([self._forward(c) for c in x.split(block)])
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.pad(x, (0, self.width - x.shape[1]))
        grad = torch.is_grad_enabled() and (x.requires_grad or self.W.requires_grad)
        for i in range(self.depth):
            z = torch.addmm(self.b[i], h, self.W[i])
            z = torch.relu(z) if grad else z.relu_()
            h = torch.addmm(h, z, self.A[i], alpha=-1.0)  # h - z A in one BLAS call
        return h @ self.w_out + self.b_out
