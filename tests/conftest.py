"""Shared fixtures: small trained fields, made once per test session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipsdf_blender.core import primitives
from lipsdf_blender.core.geometry import Geometry
from lipsdf_blender.core.sampling import SampleConfig
from lipsdf_blender.core.train import train_field

torch.set_num_threads(2)

#: A network and schedule small enough for the default test run on 2 CPU cores.
TINY = dict(
    depth=6,
    width=32,
    steps=800,
    batch_size=1024,
    lr=1.5e-2,
    samples=SampleConfig(n_uniform=20_000, n_surface=40_000),
)

SPHERE_RADIUS = 0.8


@pytest.fixture(scope="session")
def sphere_field():
    V, F = primitives.icosphere(SPHERE_RADIUS, 4)
    # A little wider and longer than TINY: the remesh must land within 1 % of the radius.
    kw = dict(TINY, width=48, steps=1500)
    return train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=0, **kw)


@pytest.fixture(scope="session")
def box_field():
    V, F = primitives.box_mesh(half_size=(0.6, 0.4, 0.3))
    return train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=1, **TINY)


def random_points(n: int, half: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-half, half, size=(n, 3))
