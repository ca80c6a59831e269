"""The SLL network is 1-Lipschitz for any parameters, and its folded form is the same function."""

import numpy as np
import pytest
import torch

from lipsdf_blender.core.fields.network import LipschitzMLP, sll_scales


def grad_norms(net, x):
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(net(x).sum(), x)
    return g.norm(dim=1)


@pytest.mark.parametrize("depth,width,seed", [(1, 3, 0), (4, 16, 1), (8, 64, 2), (20, 128, 3)])
def test_gradient_norm_at_most_one_for_random_weights(depth, width, seed):
    torch.manual_seed(seed)
    net = LipschitzMLP(depth, width)
    with torch.no_grad():  # far from the initialisation: large weights, biases and q
        net.W.mul_(torch.rand(()) * 50)
        net.b.normal_(0, 3)
        net.q.normal_(0, 4)
        net.w_out.normal_()
    x = torch.randn(20000, 3) * 2
    assert grad_norms(net, x).max().item() <= 1 + 1e-5
    # Lipschitz along random pairs too (no autograd involved).
    y = x + torch.randn_like(x) * 0.1
    with torch.no_grad():
        ratio = (net(x) - net(y)).abs() / (x - y).norm(dim=1)
    assert ratio.max().item() <= 1 + 1e-5


def test_a_single_layer_matches_the_formula():
    torch.manual_seed(0)
    net = LipschitzMLP(1, 5)
    with torch.no_grad():
        net.q.normal_()
    x = torch.randn(7, 3, dtype=torch.float64)
    W, b, q = (t[0].double() for t in (net.W, net.b, net.q))
    G = (W.T @ W).abs()
    T = torch.diag((G * torch.exp(q[None, :] - q[:, None])).sum(1))
    xp = torch.nn.functional.pad(x, (0, 2))
    h = xp - (2 * W @ torch.linalg.inv(T) @ torch.relu(W.T @ xp.T + b[:, None])).T
    w = net.w_out.double()
    expected = h @ (w / w.norm()) + net.b_out.double()
    got = net.double()(x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(sll_scales(net.W, net.q)[0].double(), 2 / torch.diag(T), rtol=1e-5)


def test_folded_network_is_the_same_function():
    torch.manual_seed(3)
    net = LipschitzMLP(6, 24)
    with torch.no_grad():
        net.q.normal_()
        net.b.normal_()
    x = torch.randn(5000, 3)
    with torch.no_grad():
        a = net(x)
        b = net.folded()(x)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
    assert grad_norms(net.folded(), x).max().item() <= 1 + 1e-5
