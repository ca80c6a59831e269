"""A distance field sampled on a voxel grid's narrow band (what an OpenVDB level set stores).

Voxel ``ijk`` (integers) has its centre at ``ijk * voxel``: the convention of an OpenVDB grid
with a linear transform of voxel size ``voxel``, whose index-space integer coordinates are voxel
centres. The narrow band of half-width ``band`` voxels is the set of voxels where
``|f| < band * voxel``; OpenVDB keeps those as active voxels and stores ``background = band *
voxel`` (with the inside's sign) everywhere else.

A 1-Lipschitz field cannot reach the band inside a block whose centre value is farther from
zero than ``band * voxel`` plus the block's half-diagonal, so the band is found by refining
blocks from coarse to fine (OpenVDB's leaves of 8^3 voxels, then 4^3 and 2^3 blocks inside
them) and evaluating voxel by voxel only in the blocks that remain: the cost grows with the
surface area, not with the volume of the grid. Nothing is lost by the pruning when the field
is 1-Lipschitz (a trained field, or the exact distance
:class:`~..surfaces.mesh_distance.MeshDistance`).

Example
-------
>>> from lipsdf_blender.core.fields.sdf import SphereField
>>> ijk, values = narrow_band(SphereField(radius=1.0), voxel=0.05, band=3.0)
>>> bool(abs(values).max() < 0.15)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ..errors import BadInputError, CancelledError
from ..fields.query import field_device

__all__ = ["LEAF", "MAX_DIM", "MAX_VOXELS", "band_index_range", "narrow_band"]

#: Side of a block in voxels: OpenVDB's leaf node (8^3 voxels).
LEAF = 8
#: Most voxels a grid may have along any axis (the add-on's resolution slider stops at 2048).
MAX_DIM = 2048
#: Most voxels the leaf blocks holding the band may have (about 4 GiB of output at most).
MAX_VOXELS = 1 << 28
#: Voxels evaluated per field call by default.
DEFAULT_BATCH = 65536

#: The 8 corners (children) of a cube: ``(8, 3)`` offsets 0 or 1.
_CORNERS = np.stack(np.meshgrid(*([np.arange(2)] * 3), indexing="ij"), axis=-1).reshape(-1, 3)

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


def _check_sizes(voxel: float, band: float) -> tuple[float, float]:
    ok = isinstance(voxel, int | float | np.floating | np.integer) and not isinstance(voxel, bool)
    if not ok or not math.isfinite(voxel) or voxel <= 0:
        raise BadInputError(f"voxel must be a finite size > 0 in object units, got {voxel!r}")
    ok = isinstance(band, int | float | np.floating | np.integer) and not isinstance(band, bool)
    if not ok or not math.isfinite(band) or band <= 0:
        raise BadInputError(f"band must be a finite number of voxels > 0, got {band!r}")
    return float(voxel), float(band)


def _range(lo: np.ndarray, hi: np.ndarray, voxel: float, band: float):
    with np.errstate(over="ignore", invalid="ignore"):
        a = np.floor((lo - band * voxel) / voxel)
        b = np.ceil((hi + band * voxel) / voxel)
    return a, b


def band_index_range(bounds, voxel: float, band: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Index range of the voxels that cover ``bounds`` grown by ``band * voxel``.

    Parameters
    ----------
    bounds : ((3,) float, (3,) float)
        ``(lo, hi)``, object units; the box that holds the surface.
    voxel : float
        Voxel side, object units (> 0).
    band : float
        Half-width of the narrow band, in voxels (> 0).

    Returns
    -------
    lo, hi : (3,) int64
        The first and the last voxel index along each axis (inclusive); the grid has
        ``hi - lo + 1`` voxels along each axis.

    Raises
    ------
    BadInputError
        Bad sizes or bounds, or more than :data:`MAX_DIM` voxels along an axis (the message
        gives the smallest voxel size that works).

    Examples
    --------
    >>> lo, hi = band_index_range((np.zeros(3), np.ones(3)), voxel=0.1, band=2.0)
    >>> (hi - lo + 1).tolist()
    [15, 15, 15]
    """
    voxel, band = _check_sizes(voxel, band)
    lo, hi = (np.asarray(b, dtype=np.float64).reshape(3) for b in bounds)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
        raise BadInputError(f"the bounds must be finite with lo <= hi, got lo={lo}, hi={hi}")
    if 2 * band + 3 >= MAX_DIM:
        raise BadInputError(f"band must be below {(MAX_DIM - 3) // 2} voxels, got {band:g}")
    a, b = _range(lo, hi, voxel, band)
    with np.errstate(over="ignore", invalid="ignore"):
        dims = b - a + 1
        size = float((hi - lo).max())
    if not np.all(np.isfinite(dims)) or dims.max() > MAX_DIM:
        # The smallest voxel with at most MAX_DIM voxels along the longest side: about
        # size / (MAX_DIM - 2 band - 3); nudged up until it fits, then rounded up.
        need = max(size / (MAX_DIM - 2 * band - 3), voxel)
        for i in range(400):  # a few steps unless the bounds are absurd
            if not math.isfinite(need):
                break
            a2, b2 = _range(lo, hi, need, band)
            with np.errstate(over="ignore", invalid="ignore"):
                fits = np.all(np.isfinite(b2 - a2)) and (b2 - a2 + 1).max() <= MAX_DIM
            if fits:
                digits = 3 - int(math.floor(math.log10(need)))
                shown = math.ceil(need * 10**digits) / 10**digits
                raise BadInputError(
                    f"a voxel of {voxel:g} makes more than {MAX_DIM} voxels along the longest "
                    f"side; use a voxel size of at least {shown:g} (object units)"
                )
            need *= 1.01 if i < 200 else 2.0
        raise BadInputError(
            f"a voxel of {voxel:g} makes more than {MAX_DIM} voxels along the longest side; "
            "use a larger voxel"
        )
    if max(np.abs(a).max(), np.abs(b).max()) >= 2**31 - 2 * MAX_DIM:
        raise BadInputError(
            "the object lies too far from its origin for this voxel size (voxel indices must "
            "fit 32 bits); apply the object's location or use a larger voxel"
        )
    return a.astype(np.int64), b.astype(np.int64)


def _evaluate(field, ijk: np.ndarray, voxel: float, device) -> np.ndarray:
    """Field values at the voxel centres ``ijk * voxel`` (one batch), ``(k,)`` float32."""
    if len(ijk) == 0:
        return np.zeros(0, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(ijk * voxel, dtype=np.float32)).to(device)
    with torch.no_grad():
        y = field(x).detach().reshape(-1).to("cpu", torch.float32).numpy()
    if len(y) != len(x):
        raise BadInputError(f"the field returned {len(y)} values for {len(x)} points")
    if not np.all(np.isfinite(y)):
        raise BadInputError(
            "the field returned NaN or infinite values; check the field (a trained field may "
            "have diverged) before sampling it on a grid"
        )
    return y


def narrow_band(
    field,
    voxel: float,
    band: float = 3.0,
    bounds=None,
    batch_size: int = DEFAULT_BATCH,
    device=None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The voxels of a grid where ``|f| < band * voxel``, and the field's values there.

    Parameters
    ----------
    field : DistanceField
        1-Lipschitz field in object units, negative inside (see :mod:`.sdf`).
    voxel : float
        Voxel side, object units (> 0). Voxel ``ijk`` has its centre at ``ijk * voxel``.
    band : float
        Half-width of the band in voxels (> 0); OpenVDB's default level set has 3.
    bounds : ((3,) float, (3,) float), optional
        Box holding the surface; default ``field.bounds()``. The grid covers it grown by
        ``band * voxel``.
    batch_size : int
        Voxels per field call.
    device : torch.device or str, optional
        Where the field is evaluated; default the field's own device.
    progress : callable ``(done: int, total: int) -> None``, optional
        Called between batches with the leaf blocks (8^3 voxels) done so far.
    cancel : callable ``() -> bool``, optional
        Polled between batches; returning ``True`` raises :class:`CancelledError`.

    Returns
    -------
    ijk : (n, 3) int32
        Voxel indices, sorted by block; each voxel once.
    values : (n,) float32
        Field values at the voxel centres, object units; ``|values| < band * voxel`` (both
        compared in float32, as OpenVDB stores them).

    Raises
    ------
    BadInputError
        Bad sizes or bounds, a voxel so small that a side would have more than
        :data:`MAX_DIM` voxels or the band more than :data:`MAX_VOXELS` (the message
        suggests the smallest voxel that works), or a field that returns NaN.
    CancelledError
        ``cancel()`` returned ``True``.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import BoxField
    >>> ijk, values = narrow_band(BoxField(half_size=(1.0, 0.5, 0.5)), voxel=0.1)
    >>> ijk.dtype, values.dtype
    (dtype('int32'), dtype('float32'))
    """
    voxel, band = _check_sizes(voxel, band)
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    lo, hi = band_index_range(field.bounds() if bounds is None else bounds, voxel, band)
    device = field_device(field) if device is None else torch.device(device)

    def check_cancel() -> None:
        if cancel is not None and cancel():
            raise CancelledError("the grid was cancelled; nothing was produced")

    check_cancel()
    limit = float(np.float32(band * voxel))
    # float32 rounding of the coordinates and values: a tiny extra margin keeps every block
    # that could hold a band voxel.
    reach = float(np.abs(np.concatenate([lo, hi])).max() + 1) * voxel
    slack = 1e-4 * voxel + 1e-6 * reach

    # Blocks aligned to multiples of LEAF in index space, as OpenVDB's leaves are.
    base = np.floor_divide(lo, LEAF) * LEAF
    leaves = -(-(hi - base + 1) // LEAF)  # leaf blocks along each axis
    level = max(0, math.ceil(math.log2(max(int(leaves.max()), 1) / 8)))
    size = LEAF << level
    counts = -(-(hi - base + 1) // size)
    origins = base + size * np.stack(
        np.meshgrid(*(np.arange(c) for c in counts), indexing="ij"), axis=-1
    ).reshape(-1, 3)

    def split(blocks: np.ndarray, size: int) -> np.ndarray:
        """The 8 children (side ``size``) of blocks of side ``2 size`` that meet the grid."""
        kids = (blocks[:, None, :] + size * _CORNERS[None]).reshape(-1, 3)
        return kids[np.all((kids <= hi) & (kids + size - 1 >= lo), axis=1)]

    def may_hold_band(blocks: np.ndarray, size: int) -> np.ndarray:
        """Blocks whose centre value leaves room for a band voxel inside (Lipschitz)."""
        keep = np.zeros(len(blocks), dtype=bool)
        half_diagonal = math.sqrt(3.0) * (size - 1) / 2 * voxel
        for s in range(0, len(blocks), batch_size):
            check_cancel()
            f = _evaluate(field, blocks[s : s + batch_size] + (size - 1) / 2, voxel, device)
            keep[s : s + batch_size] = np.abs(f) < limit + half_diagonal + slack
        return blocks[keep]

    origins = may_hold_band(origins, size)
    while size > LEAF and len(origins):
        size //= 2
        origins = may_hold_band(split(origins, size), size)

    if len(origins) * LEAF**3 > MAX_VOXELS:
        # Band voxels grow as the area in voxels: 1 / voxel^2.
        need = voxel * math.sqrt(len(origins) * LEAF**3 / MAX_VOXELS)
        raise BadInputError(
            f"the band would hold up to {len(origins) * LEAF**3:,} voxels (at most "
            f"{MAX_VOXELS:,} fit); use a voxel size of at least {need:.3g} or a narrower band"
        )
    per_batch = max(1, batch_size // LEAF**3)
    total = len(origins)
    out_ijk, out_values = [], []
    if progress is not None:
        progress(0, total)
    for s in range(0, total, per_batch):
        check_cancel()
        # Within the leaves too: blocks of 4^3 and 2^3 voxels, then single voxels.
        ijk, size = origins[s : s + per_batch], LEAF
        while size > 2 and len(ijk):
            size //= 2
            ijk = may_hold_band(split(ijk, size), size)
        ijk = split(ijk, 1)
        f = _evaluate(field, ijk, voxel, device)
        band_mask = np.abs(f) < limit
        out_ijk.append(ijk[band_mask].astype(np.int32))
        out_values.append(f[band_mask])
        if progress is not None:
            progress(min(s + per_batch, total), total)
    check_cancel()
    if not out_ijk:
        return np.zeros((0, 3), np.int32), np.zeros(0, np.float32)
    return np.concatenate(out_ijk), np.concatenate(out_values).astype(np.float32)
