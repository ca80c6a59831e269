"""The one interface every distance field in the engine offers, and two exact ones for tests.

A *distance field* here is any object with

- ``__call__(x)``: ``x`` a float32 torch tensor of shape ``(n, 3)`` in the field's own units,
  returns a tensor of shape ``(n,)``: negative inside, positive outside, and 1-Lipschitz
  (``|f(x) - f(y)| <= |x - y|``), so ``|f(x)|`` never exceeds the true distance to the zero set;
- ``bounds()``: ``(lo, hi)``, two float64 arrays of shape ``(3,)`` bounding the zero level set.

Trained fields (:class:`lipsdf_blender.core.fields.field.Field`), CSG combinations and offsets all
follow it, so extraction, queries and CSG work on any of them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class DistanceField(Protocol):
    """A 1-Lipschitz signed (or unsigned) distance bound; see the module docstring."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def bounds(self) -> tuple[np.ndarray, np.ndarray]: ...


class SphereField:
    """Exact signed distance to a sphere (for tests and examples).

    Parameters
    ----------
    center : (3,) float
    radius : float
    """

    def __init__(self, center=(0.0, 0.0, 0.0), radius: float = 1.0):
        self.center = np.asarray(center, dtype=np.float64)
        self.radius = float(radius)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.as_tensor(self.center, dtype=x.dtype, device=x.device)
        return torch.linalg.norm(x - c, dim=1) - self.radius

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.radius, self.center + self.radius


class BoxField:
    """Exact signed distance to an axis-aligned box (for tests and examples).

    Parameters
    ----------
    center : (3,) float
    half_size : (3,) float
    """

    def __init__(self, center=(0.0, 0.0, 0.0), half_size=(1.0, 1.0, 1.0)):
        self.center = np.asarray(center, dtype=np.float64)
        self.half_size = np.asarray(half_size, dtype=np.float64)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        c = torch.as_tensor(self.center, dtype=x.dtype, device=x.device)
        h = torch.as_tensor(self.half_size, dtype=x.dtype, device=x.device)
        q = (x - c).abs() - h
        outside = torch.linalg.norm(q.clamp(min=0), dim=1)
        inside = q.max(dim=1).values.clamp(max=0)
        return outside + inside

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.half_size, self.center + self.half_size
