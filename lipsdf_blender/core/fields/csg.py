"""Constructive solid geometry on distance fields: transforms, offsets, booleans, blends.

Every class here follows the :class:`~lipsdf_blender.core.fields.sdf.DistanceField` protocol itself
(``field(x)`` on ``(n, 3)`` float32 tensors, ``field.bounds()``), so results compose freely and
can be extracted, queried or combined again. Each operation keeps the 1-Lipschitz bound:

- a similarity transform with scale ``s`` multiplies distances by ``s`` and the argument by
  ``1/s``, so the slope is unchanged;
- ``min`` and ``max`` of 1-Lipschitz functions are 1-Lipschitz;
- the smooth minimum used here is 1-Lipschitz in the max-norm of its two arguments (see
  :func:`smooth_min`), so blending 1-Lipschitz fields gives a 1-Lipschitz field.

Signs follow the protocol: negative inside. For a union of exact distance fields the result is
exact outside the union; inside, and for intersections and differences, it is a lower bound of
the true distance with the right sign everywhere.

Example
-------
>>> from lipsdf_blender.core.fields.sdf import SphereField
>>> a, b = SphereField((0, 0, 0), 1.0), SphereField((1, 0, 0), 1.0)
>>> blob = combine("union", [a, b], blend=0.2)
>>> lo, hi = blob.bounds()
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import BadInputError
from .query import field_device
from .sdf import DistanceField
from .transform import UNIFORM_SCALE_RTOL, similarity_scales  # noqa: F401 - re-exported

OPERATIONS = ("union", "intersection", "difference")


def _check_field(field: object, what: str = "operand") -> DistanceField:
    if not isinstance(field, DistanceField):
        raise BadInputError(
            f"the CSG {what} {field!r} is not a distance field (it needs a __call__ on "
            "(n, 3) tensors and a bounds() method)"
        )
    return field


def _bounds_of(field: DistanceField) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = field.bounds()
    return np.asarray(lo, dtype=np.float64).reshape(3), np.asarray(hi, dtype=np.float64).reshape(3)


def _check_radius(radius: float) -> float:
    radius = float(radius)
    if not np.isfinite(radius) or radius <= 0.0:
        raise BadInputError(f"the blend radius must be a positive number, got {radius}")
    return radius


def smooth_min(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Quadratic polynomial smooth minimum of two 1-Lipschitz fields.

    Parameters
    ----------
    a, b : (n,) tensors
        Values of two distance fields at the same points.
    k : float
        Blend radius, in the fields' units: where ``|a - b| >= k`` the result is exactly
        ``min(a, b)``.

    Returns
    -------
    (n,) tensor
        ``smin(a, b)``, with ``min(a, b) - k/4 <= smin(a, b) <= min(a, b)``.

    Notes
    -----
    With ``h = clamp(1/2 + (b - a) / (2k), 0, 1)`` and ``smin = h a + (1 - h) b - k h (1 - h)``:
    in the blend zone ``0 < h < 1`` we have ``dh/da = -1/(2k)`` and ``(b - a)/(2k) = h - 1/2``,
    so

        d smin/da = h + (a - b) dh/da - k (1 - 2h) dh/da
                  = h + (h - 1/2) + (1/2 - h) = h,

    and in the same way ``d smin/db = 1 - h`` (outside the zone ``h`` is 0 or 1 and ``smin`` is
    ``b`` or ``a``). Both partial derivatives are non-negative and sum to one, so

        |smin(a, b) - smin(a', b')| <= max(|a - a'|, |b - b'|),

    and if ``a`` and ``b`` are 1-Lipschitz in ``x`` the right side is at most ``|x - x'|``:
    the blend is 1-Lipschitz, and where the operands are differentiable its gradient is the
    convex combination ``h grad a + (1 - h) grad b``, of norm at most 1. This holds exactly,
    so the log-sum-exp smooth minimum (which is also below ``min`` everywhere, by up to
    ``k log 2``, and never equals it) is not needed. Writing ``a <= b`` (so ``h >= 1/2`` and
    ``b - a = k (2h - 1)``) gives ``smin = a - k (1 - h)^2``, hence the bound ``k/4``, reached
    where ``a = b``.
    """
    h = torch.clamp(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + h * (a - b) - k * h * (1.0 - h)


def smooth_max(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Smooth maximum ``-smin(-a, -b)``: ``max(a, b) <= smax <= max(a, b) + k/4``.

    Parameters
    ----------
    a, b : (n,) tensors
    k : float
        Blend radius, in the fields' units.

    Returns
    -------
    (n,) tensor
    """
    return -smooth_min(-a, -b, k)


class _Node:
    """Shared plumbing of the CSG classes: the device the operands live on."""

    _operands: tuple[DistanceField, ...]

    @property
    def device(self) -> torch.device:
        """The torch device of the first operand that has one (CPU for analytic fields)."""
        for field in self._operands:
            device = field_device(field)
            if device.type != "cpu":
                return device
        return torch.device("cpu")


def placed(field: DistanceField, matrix=None) -> DistanceField:
    """``field`` in world units through ``matrix`` (object to world), or as it is without."""
    return field if matrix is None else Transformed(field, matrix)


class Transformed(_Node):
    """A distance field moved by an object-to-world similarity transform.

    Evaluates ``s * f(M^-1 x)``, where ``s`` is the uniform scale of ``M``. Rotations,
    translations, uniform scales and mirrors keep distances proportional, so the result is an
    exact distance field whenever ``f`` is; anything else (non-uniform scale, shear,
    perspective, zero scale) would break the Lipschitz bound and is refused.

    Parameters
    ----------
    field : DistanceField
        The field in the object's own (local) units.
    matrix : (4, 4) array_like
        Object-to-world transform, row-major, acting on column vectors as Blender's
        ``matrix_world`` does: ``world = M @ [x, y, z, 1]``.
    name : str, optional
        The object's name, used in error messages.

    Raises
    ------
    BadInputError
        If ``matrix`` is not a finite 4x4 affine transform with a non-zero uniform scale.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import SphereField
    >>> M = np.diag([2.0, 2.0, 2.0, 1.0]); M[:3, 3] = (1.0, 0.0, 0.0)
    >>> big = Transformed(SphereField(radius=1.0), M, name="Sphere")  # radius 2 at (1, 0, 0)
    """

    def __init__(self, field: DistanceField, matrix, name: str | None = None):
        self.field = _check_field(field)
        self._operands = (self.field,)
        self.name = name
        label = f"object {name!r}" if name else "the object"
        M = np.asarray(matrix, dtype=np.float64)
        sigma = similarity_scales(M, label)
        self.matrix = M
        self.scale = float(sigma.mean())
        self._inverse_linear = np.linalg.inv(M[:3, :3])
        self._translation = M[:3, 3].copy()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        A_inv = torch.as_tensor(self._inverse_linear, dtype=x.dtype, device=x.device)
        t = torch.as_tensor(self._translation, dtype=x.dtype, device=x.device)
        local = (x - t) @ A_inv.T
        return self.field(local) * self.scale

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = _bounds_of(self.field)
        pick = np.array(np.meshgrid((0, 1), (0, 1), (0, 1), indexing="ij")).reshape(3, 8).T
        corners = np.where(pick == 1, hi, lo)  # (8, 3)
        world = corners @ self.matrix[:3, :3].T + self._translation
        return world.min(axis=0), world.max(axis=0)


class Offset(_Node):
    """The level set ``f = distance`` of a field: grown outward (``> 0``) or inward (``< 0``).

    Parameters
    ----------
    field : DistanceField
    distance : float
        Offset in the field's units; negative shrinks the shape.

    Notes
    -----
    ``bounds()`` grows the inner bounds by ``max(distance, 0)``, which is exact for exact
    distance fields; for a field that underestimates distances far from its surface, the grown
    level set can reach a little further.
    """

    def __init__(self, field: DistanceField, distance: float):
        self.field = _check_field(field)
        self._operands = (self.field,)
        self.distance = float(distance)
        if not np.isfinite(self.distance):
            raise BadInputError(f"the offset distance must be a finite number, got {distance}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.field(x) - self.distance

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = _bounds_of(self.field)
        grow = max(self.distance, 0.0)
        return lo - grow, hi + grow


class _Many(_Node):
    def __init__(self, fields: Sequence[DistanceField], what: str):
        fields = tuple(fields)
        if len(fields) < 2:
            raise BadInputError(f"a {what} needs at least two fields, got {len(fields)}")
        self.fields = tuple(_check_field(f) for f in fields)
        self._operands = self.fields


def _union_bounds(fields: Sequence[DistanceField], grow: float = 0.0):
    boxes = [_bounds_of(f) for f in fields]
    lo = np.min([b[0] for b in boxes], axis=0)
    hi = np.max([b[1] for b in boxes], axis=0)
    return lo - grow, hi + grow


def _intersection_bounds(fields: Sequence[DistanceField]):
    boxes = [_bounds_of(f) for f in fields]
    lo = np.max([b[0] for b in boxes], axis=0)
    hi = np.min([b[1] for b in boxes], axis=0)
    if np.any(lo > hi):
        raise BadInputError("the objects do not overlap; their intersection is empty")
    return lo, hi


class Union(_Many):
    """Union ``min(f_1, ..., f_n)``; exact outside when the operands are exact.

    Parameters
    ----------
    *fields : DistanceField
        Two or more fields.
    """

    def __init__(self, *fields: DistanceField):
        super().__init__(fields, "union")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fields[0](x)
        for f in self.fields[1:]:
            out = torch.minimum(out, f(x))
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _union_bounds(self.fields)


class Intersection(_Many):
    """Intersection ``max(f_1, ..., f_n)``.

    Parameters
    ----------
    *fields : DistanceField
        Two or more fields.

    Notes
    -----
    ``bounds()`` raises :class:`BadInputError` when the operands' boxes do not overlap.
    """

    def __init__(self, *fields: DistanceField):
        super().__init__(fields, "intersection")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fields[0](x)
        for f in self.fields[1:]:
            out = torch.maximum(out, f(x))
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _intersection_bounds(self.fields)


class Difference(_Node):
    """``a`` minus ``b``: ``max(a, -b)``.

    Parameters
    ----------
    a, b : DistanceField
    """

    def __init__(self, a: DistanceField, b: DistanceField):
        self.a = _check_field(a)
        self.b = _check_field(b)
        self._operands = (self.a, self.b)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(self.a(x), -self.b(x))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _bounds_of(self.a)


class SmoothUnion(_Many):
    """Blended union: the pairwise fold ``smin(smin(f_1, f_2), f_3) ...``.

    Parameters
    ----------
    fields : sequence of DistanceField
        Two or more fields.
    radius : float
        Blend radius in the fields' units (see :func:`smooth_min`).

    Notes
    -----
    The result lies between ``min(f_i) - (n - 1) radius / 4`` and ``min(f_i)``, and equals the
    hard union where the operands differ by at least ``radius``. ``bounds()`` grows the union
    of the boxes by ``radius`` (by ``(n - 1) radius / 4`` for more than five operands), which
    covers the blend's fillets for exact operands.
    """

    def __init__(self, fields: Sequence[DistanceField], radius: float):
        super().__init__(fields, "smooth union")
        self.radius = _check_radius(radius)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fields[0](x)
        for f in self.fields[1:]:
            out = smooth_min(out, f(x), self.radius)
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        grow = self.radius * max(1.0, (len(self.fields) - 1) / 4.0)
        return _union_bounds(self.fields, grow)


class SmoothIntersection(_Many):
    """Blended intersection: the pairwise fold of :func:`smooth_max`.

    Parameters
    ----------
    fields : sequence of DistanceField
        Two or more fields.
    radius : float
        Blend radius in the fields' units.

    Notes
    -----
    The result lies between ``max(f_i)`` and ``max(f_i) + (n - 1) radius / 4``, so its zero
    set lies inside the hard intersection and the hard intersection's box bounds it.
    """

    def __init__(self, fields: Sequence[DistanceField], radius: float):
        super().__init__(fields, "smooth intersection")
        self.radius = _check_radius(radius)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fields[0](x)
        for f in self.fields[1:]:
            out = smooth_max(out, f(x), self.radius)
        return out

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _intersection_bounds(self.fields)


class SmoothDifference(_Node):
    """Blended difference ``smax(a, -b)``, between ``max(a, -b)`` and that plus ``radius/4``.

    Parameters
    ----------
    a, b : DistanceField
    radius : float
        Blend radius in the fields' units.
    """

    def __init__(self, a: DistanceField, b: DistanceField, radius: float):
        self.a = _check_field(a)
        self.b = _check_field(b)
        self._operands = (self.a, self.b)
        self.radius = _check_radius(radius)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return smooth_max(self.a(x), -self.b(x), self.radius)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return _bounds_of(self.a)


def combine(
    op: str,
    fields: Sequence[DistanceField],
    blend: float = 0.0,
    matrices: Sequence | None = None,
    names: Sequence[str] | None = None,
) -> DistanceField:
    """Combine fields with a boolean operation, optionally blended and placed in the world.

    Parameters
    ----------
    op : {"union", "intersection", "difference"}
        For ``"difference"`` every field after the first is subtracted from the first.
    fields : sequence of DistanceField
        Two or more fields, each in its object's local units.
    blend : float, default 0
        Blend radius in world units; ``> 0`` selects the smooth operation.
    matrices : sequence of (4, 4) array_like, optional
        One object-to-world matrix per field; each field is wrapped in :class:`Transformed`
        first, so the result is in world units.
    names : sequence of str, optional
        Object names for error messages.

    Returns
    -------
    DistanceField

    Raises
    ------
    BadInputError
        Unknown ``op``, fewer than two fields, a negative blend, mismatched list lengths, or a
        transform that is not a similarity.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import BoxField, SphereField
    >>> cut = combine("difference", [BoxField(), SphereField(radius=1.2)], blend=0.1)
    """
    if op not in OPERATIONS:
        raise BadInputError(f"unknown CSG operation {op!r}; use one of {', '.join(OPERATIONS)}")
    fields = list(fields)
    if len(fields) < 2:
        raise BadInputError(f"a {op} needs at least two objects, got {len(fields)}")
    blend = float(blend)
    if not np.isfinite(blend) or blend < 0.0:
        raise BadInputError(f"the blend radius must be zero or positive, got {blend}")
    if names is not None and len(names) != len(fields):
        raise BadInputError(f"got {len(names)} names for {len(fields)} objects")
    if matrices is not None:
        if len(matrices) != len(fields):
            raise BadInputError(f"got {len(matrices)} matrices for {len(fields)} objects")
        fields = [
            Transformed(f, m, name=None if names is None else names[i])
            for i, (f, m) in enumerate(zip(fields, matrices, strict=True))
        ]
    if op == "union":
        return SmoothUnion(fields, blend) if blend > 0 else Union(*fields)
    if op == "intersection":
        return SmoothIntersection(fields, blend) if blend > 0 else Intersection(*fields)
    out = fields[0]
    for b in fields[1:]:
        out = SmoothDifference(out, b, blend) if blend > 0 else Difference(out, b)
    return out
