"""Surfaces from distance fields: sparse, Lipschitz-pruned marching cubes.

A 1-Lipschitz field cannot cross a level inside a cube whose centre value is farther from that
level than the cube's half-diagonal. Extraction therefore refines a coarse grid of cubes,
dropping every cube that cannot hold a requested level, and evaluates the field only at the
corners of the finest cubes that remain: the cost grows with the surface area, not with the
volume of the grid, and no ``(N+1)^3`` array is ever allocated.

Several levels (offsets) share one hierarchy and one set of corner values; marching cubes then
runs once per level. Every mesh returned is closed, outward oriented (normals point towards
larger field values), free of degenerate faces and of unreferenced vertices, and in the
field's own units.

Why the pruning loop is written twice: the numpy loop (:func:`_prune` and the corner pass in
:func:`extract_levels`) streams cells in batches, so memory stays bounded on a laptop; the
CUDA loop (:func:`_levels_on_device`) keeps every step on the GPU as a few large tensor
operations, so the host only launches work. Each is the better one on its own device: a sphere
at resolution 512 on one CPU thread (2.1M faces, the machine otherwise idle) takes 5.0 s and
peaks at 763 MiB through numpy against 6.2 s and 1,543 MiB through the tensor loop, while on a
GPU the numpy loop would move every level's cells between host and device.
``tests/test_extract.py`` runs the tensor loop on the CPU and checks that both give the same
meshes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import igl
import numpy as np
import torch

from ..errors import BadInputError, CancelledError
from ..fields.sdf import DistanceField
from ..types import Faces, Points
from .contour import dual_contour
from .cube import CHILDREN, CUBE_CORNERS, LATTICE
from .topology import is_watertight

__all__ = ["ExtractResult", "ExtractStats", "cell_size", "extract", "extract_levels"]

log = logging.getLogger(__name__)

# Rows of cells processed at once when building corner indices; bounds temporary memory.
_CHUNK = 1 << 18
_MIN_RESOLUTION = 16
_MARGIN_CELLS = 3
_MARGIN_FRACTION = 0.02

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], bool]


@dataclass
class ExtractStats:
    """Cost of one extraction.

    Attributes
    ----------
    evaluations : int
        Field evaluations actually made (cell centres at every level of the hierarchy plus
        cell corners), shared by all levels extracted in the same call.
    dense_evaluations : int
        ``(nx+1)(ny+1)(nz+1)``: what a dense grid of the same cells would have cost.
    ratio : float
        ``evaluations / dense_evaluations``.
    seconds : float
        Wall-clock time of the whole call (all levels).
    active_cells : int
        Finest cells handed to marching cubes for this level (cells that cross it).
    resolution : int
        Cells along the longest side of the grid.
    shape : tuple of int
        Cells per axis ``(nx, ny, nz)``.
    cell_size : float
        Side ``h`` of a finest cell, in field units.
    grid_bounds : tuple of two (3,) float64 arrays
        Corners ``(lo, hi)`` of the grid actually used; the mesh lies inside this box.
    """

    evaluations: int
    dense_evaluations: int
    ratio: float
    seconds: float
    active_cells: int
    resolution: int
    shape: tuple[int, int, int]
    cell_size: float
    grid_bounds: tuple[np.ndarray, np.ndarray]


@dataclass
class ExtractResult:
    """One extracted level set.

    Attributes
    ----------
    vertices : (n, 3) float64
        Positions in field units; ``n == 0`` when the field never reaches the level.
    faces : (m, 3) int64
        Triangles, counter-clockwise seen from outside (larger field values).
    level : float
        The level (offset) this surface was extracted at, in field units.
    stats : ExtractStats
    detail_share : float or None
        Share of the surface's area (0 to 1) whose position came from the input's own
        distance (``surfaces.remesh.remesh`` with the input's detail); the rest came from the
        trained field. ``None`` where no input surface was used.
    """

    vertices: Points
    faces: Faces
    level: float
    stats: ExtractStats = dataclasses.field(repr=False)
    detail_share: float | None = None

    @property
    def is_empty(self) -> bool:
        """True when there is no surface at this level."""
        return len(self.faces) == 0


class _Grid:
    """Geometry of the finest grid: origin ``lo``, cell side ``h``, cells per axis ``n``."""

    def __init__(self, lo: np.ndarray, h: float, n: np.ndarray):
        self.lo = lo
        self.h = h
        self.n = n
        self.stride = (n + 1).astype(np.int64)  # corners per axis, for corner keys

    def corner_keys(self, ijk: np.ndarray) -> np.ndarray:
        """``(k, 3)`` int64 corner indices -> ``(k,)`` int64 keys ``i + X*(j + Y*k)``."""
        sx, sy = int(self.stride[0]), int(self.stride[1])
        return ijk[:, 0] + sx * (ijk[:, 1] + sy * ijk[:, 2])

    def corner_ijk(self, keys: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`corner_keys`."""
        sx, sy = int(self.stride[0]), int(self.stride[1])
        i = keys % sx
        rest = keys // sx
        return np.stack([i, rest % sy, rest // sy], axis=1)

    def corner_positions(self, ijk: np.ndarray) -> np.ndarray:
        return self.lo + ijk.astype(np.float64) * self.h


class _Progress:
    """Maps stage-wise work onto one fixed ``total`` and polls the cancel hook."""

    TOTAL = 1000

    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None):
        self.progress = progress
        self.cancel = cancel
        self.start = 0.0
        self.width = 0.0

    def stage(self, start: float, end: float) -> None:
        self.start, self.width = start, end - start
        self.report(0.0)

    def report(self, fraction: float) -> None:
        self.check_cancel()
        if self.progress is not None:
            done = int(round(self.TOTAL * (self.start + self.width * min(max(fraction, 0.0), 1.0))))
            self.progress(done, self.TOTAL)

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise CancelledError("Extraction was cancelled; nothing was produced.")


def _evaluate(field: DistanceField, points: np.ndarray, device) -> np.ndarray:
    """Field values at ``points (k, 3) float64`` (one batch), as ``(k,)`` float64."""
    x = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
    if device is not None:
        x = x.to(device)
    with torch.no_grad():
        y = field(x)
    y = y.detach().reshape(-1).to("cpu", torch.float64).numpy()
    if len(y) != len(x):
        raise BadInputError(
            f"The field returned {len(y)} values for {len(x)} points; it must return one "
            "value per point."
        )
    if not np.all(np.isfinite(y)):
        raise BadInputError(
            "The field returned NaN or infinite values; check the field (a trained field may "
            "have diverged) before extracting a surface from it."
        )
    return y


def _make_grid(
    field: DistanceField, levels: np.ndarray, resolution: int, margin: float | None
) -> _Grid | None:
    lo, hi = (np.asarray(b, dtype=np.float64).reshape(3) for b in field.bounds())
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi >= lo)):
        raise BadInputError(
            f"The field's bounds are invalid (lo={lo}, hi={hi}); they must be finite with lo <= hi."
        )
    grow = max(float(levels.max()), 0.0)
    if margin is None:
        # Margin = 3 cells + 2% of the diagonal, where the cell size itself depends on the
        # margin: solve  h * resolution = longest + 2 * (grow + 0.02 * diag + 3 h).
        base = hi - lo + 2.0 * (grow + _MARGIN_FRACTION * float(np.linalg.norm(hi - lo)))
        h = float(base.max()) / (resolution - 2 * _MARGIN_CELLS)
        pad = grow + _MARGIN_FRACTION * float(np.linalg.norm(hi - lo)) + _MARGIN_CELLS * h
    else:
        if not (math.isfinite(margin) and margin >= 0):
            raise BadInputError(f"margin must be a finite distance >= 0, got {margin}.")
        pad = grow + float(margin)
        h = float((hi - lo + 2.0 * pad).max()) / resolution
    if not h > 0:
        return None  # zero-size box: no surface can be resolved
    box_lo, box_hi = lo - pad, hi + pad
    n = np.maximum(np.ceil((box_hi - box_lo) / h - 1e-9).astype(np.int64), 1)
    # Centre the (slightly larger) grid on the box.
    origin = 0.5 * (box_lo + box_hi) - 0.5 * n * h
    return _Grid(origin, h, n)


def cell_size(field: DistanceField, resolution: int) -> float:
    """Side of the cells :func:`extract` uses for ``field``'s zero level at ``resolution``."""
    grid = _make_grid(field, np.zeros(1), int(resolution), None)
    return 0.0 if grid is None else grid.h


def _touches_boundary(cells: np.ndarray, size: int, n: np.ndarray) -> np.ndarray:
    """Cells (side ``size`` finest cells) whose closed box meets the grid's outer boundary."""
    return np.any((cells == 0) | ((cells + 1) * size >= n), axis=1)


def _children(cells: np.ndarray, child_size: int, n: np.ndarray) -> np.ndarray:
    """The (up to) 8 children of each cell that lie inside the grid."""
    kids = (2 * cells[:, None, :] + CHILDREN[None, :, :]).reshape(-1, 3)
    return kids[np.all(kids * child_size < n, axis=1)]


def _prune_bounds(field, points, levels: np.ndarray, device):
    """``(two, one)``, each ``(k, L)`` float64, for the cell centres ``points``.

    ``two`` is a lower bound on the distance from a centre to where the field equals each
    level, ``one`` on how far below each level the field can go near it. For a 1-Lipschitz
    field they are ``|f - level|`` and ``f - level``; a field whose surface is not its own
    Lipschitz bound (``detail.DetailField``) supplies them through ``prune_bounds``.
    """
    hook = getattr(field, "prune_bounds", None)
    if hook is None:
        d = _evaluate(field, points, device)[:, None] - levels[None, :]
        return np.abs(d), d
    x = torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32))
    if device is not None:
        x = x.to(device)
    two, one = hook(x, levels)
    return (t.detach().to("cpu", torch.float64).numpy() for t in (two, one))


def _may_hold(two: np.ndarray, one: np.ndarray, radius: float, one_sided: np.ndarray):
    """Cells that may hold one of the levels: ``two <= radius`` for some level.

    Cells on the grid boundary are kept if they may lie below a level anywhere
    (``one <= radius``), because their boundary corners are forced outside and
    marching cubes must then close the surface inside them.
    """
    keep_two = np.any(two <= radius, axis=1)
    keep_one = np.any(one <= radius, axis=1)
    return np.where(one_sided, keep_one, keep_two)


def _prune(grid: _Grid, levels: np.ndarray, batch_size: int, device, field, tracker, top: int):
    """Coarse-to-fine Lipschitz pruning down to cells of side ``2 h``.

    Returns the surviving cells of side ``2 h`` as ``(k, 3)`` int64 (units of ``2 h``) and
    the number of field evaluations made.
    """
    size = 1 << top
    counts = -(-grid.n // size)  # ceil
    axes = [np.arange(c, dtype=np.int64) for c in counts]
    cells = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    # Tolerance for float32 rounding of positions and values, relative to the coordinates.
    scale = float(np.abs(grid.lo).max() + grid.n.max() * grid.h)
    eps = 1e-6 * scale
    evaluations = 0
    for step, k in enumerate(range(top, 0, -1)):
        size = 1 << k
        tracker.stage(0.3 * step / top, 0.3 * (step + 1) / top)
        radius = 0.5 * math.sqrt(3.0) * size * grid.h * (1.0 + 1e-4) + eps
        # Split the previous level's cells a batch at a time so no step holds more than a
        # batch of children and centres.
        per = max(1, batch_size // 8) if step > 0 else batch_size
        kept = []
        for a in range(0, len(cells), per):
            tracker.report(a / len(cells))
            kids = _children(cells[a : a + per], size, grid.n) if step > 0 else cells[a : a + per]
            centres = grid.lo + (kids.astype(np.float64) + 0.5) * (size * grid.h)
            two, one = _prune_bounds(field, centres, levels, device)
            evaluations += len(kids)
            one_sided = _touches_boundary(kids, size, grid.n)
            kept.append(kids[_may_hold(two, one, radius, one_sided)])
        cells = np.concatenate(kept) if kept else np.empty((0, 3), np.int64)
    return cells, evaluations


def _unique(a: np.ndarray) -> np.ndarray:
    """Sorted unique values of an int64 array (sorting beats ``np.unique``'s hashing here)."""
    a = np.sort(a)
    keep = np.empty(len(a), dtype=bool)
    keep[:1] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def _corner_keys(grid: _Grid, parents: np.ndarray) -> np.ndarray:
    """Sorted unique keys of the corners of all children (side ``h``) of ``parents``.

    Built from the 3x3x3 corner lattice of each parent: 27 keys per parent to sort instead
    of 64 for its 8 children.
    """
    parts = []
    per = _CHUNK // 32
    for s in range(0, len(parents), per):
        lat = (2 * parents[s : s + per, None, :] + LATTICE[None]).reshape(-1, 3)
        lat = lat[np.all(lat <= grid.n, axis=1)]  # corners of children outside the grid
        parts.append(_unique(grid.corner_keys(lat)))
    return _unique(np.concatenate(parts)) if parts else np.empty(0, np.int64)


def _crossing_cells(
    grid: _Grid, parents: np.ndarray, keys: np.ndarray, level_values: list[np.ndarray], levels
) -> list[np.ndarray]:
    """For each level, the children of ``parents`` whose corner values straddle it.

    Returns one ``(c_l, 8)`` int64 array per level of indices into ``keys`` in
    :data:`CUBE_CORNERS` order: the ``GI`` argument of ``igl.marching_cubes``. Works in
    chunks so only crossing cells are ever stored.
    """
    out: list[list[np.ndarray]] = [[] for _ in levels]
    per = _CHUNK // 64
    for a in range(0, len(parents), per):
        cells = _children(parents[a : a + per], 1, grid.n)
        ck = grid.corner_keys((cells[:, None, :] + CUBE_CORNERS[None]).reshape(-1, 3))
        gi = np.searchsorted(keys, ck).reshape(-1, 8)
        for l, (s, level) in enumerate(zip(level_values, levels, strict=True)):
            v = s[gi]
            out[l].append(gi[(v.min(axis=1) < level) & (v.max(axis=1) > level)])
    return [np.concatenate(o) if o else np.empty((0, 8), np.int64) for o in out]


def _level_values(values: np.ndarray, on_boundary: np.ndarray, level: float, delta: float):
    """Corner values prepared for marching cubes at ``level``.

    Values within ``delta`` of the level are pushed to ``level +- delta`` so no cut point
    falls on a corner (which would make zero-area triangles); since the field is
    1-Lipschitz, every cut point then stays at least ``delta`` away from both corners of
    its edge. Corners on the grid's outer boundary count as outside so the surface closes.
    """
    s = values.copy()
    near = np.abs(s - level) < delta
    s[near] = np.where(s[near] >= level, level + delta, level - delta)
    s[on_boundary] = np.maximum(s[on_boundary], level + delta)
    return s


def _clean(V: np.ndarray, F: np.ndarray) -> tuple[Points, Faces]:
    """Drop faces with repeated indices or zero area, then unreferenced vertices."""
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
    V = np.asarray(V, dtype=np.float64).reshape(-1, 3)
    if len(F):
        repeated = (F[:, 0] == F[:, 1]) | (F[:, 1] == F[:, 2]) | (F[:, 0] == F[:, 2])
        zero_area = np.empty(len(F), dtype=bool)
        for a in range(0, len(F), _CHUNK):
            f = F[a : a + _CHUNK]
            n = np.cross(V[f[:, 1]] - V[f[:, 0]], V[f[:, 2]] - V[f[:, 0]])
            zero_area[a : a + _CHUNK] = ~np.any(n != 0, axis=1)
        bad = repeated | zero_area
        if np.any(bad):
            # Should not happen after the level nudge; a hole here is better than a crash.
            log.warning("Removed %d degenerate triangles from the extracted mesh.", bad.sum())
            F = F[~bad]
    used = np.zeros(len(V), dtype=bool)
    used[F.ravel()] = True
    remap = np.cumsum(used) - 1
    return np.ascontiguousarray(V[used]), np.ascontiguousarray(remap[F].astype(np.int64))


def _cuda_device(device) -> torch.device | None:
    """The CUDA device to run the whole hierarchy on, or None for the numpy path."""
    if device is None:
        return None
    dev = torch.device(device)
    return dev if dev.type == "cuda" else None


def _t_children(cells: torch.Tensor, child_size: int, n: torch.Tensor) -> torch.Tensor:
    kids = (2 * cells[:, None, :] + _T_CHILDREN.to(cells.device)[None]).reshape(-1, 3)
    return kids[(kids * child_size < n).all(dim=1)]


_T_CHILDREN = torch.from_numpy(CHILDREN)


def _t_evaluate(field, points: torch.Tensor) -> torch.Tensor:
    """Field values at float64 ``points`` (on the device), as float64 on the same device."""
    with torch.no_grad():
        y = field(points.float()).reshape(-1)
    if len(y) != len(points):
        raise BadInputError(
            f"The field returned {len(y)} values for {len(points)} points; it must return one "
            "value per point."
        )
    if not bool(torch.isfinite(y).all()):
        raise BadInputError(
            "The field returned NaN or infinite values; check the field (a trained field may "
            "have diverged) before extracting a surface from it."
        )
    return y.double()


def _levels_on_device(field, grid: _Grid, lv: np.ndarray, batch_size, dev, tracker, top: int):
    """The whole hierarchy on a CUDA device (same tests and results as the numpy path).

    Every step is a few large tensor operations, so the host only launches work: pruning,
    corner deduplication (``torch.unique`` over the 3x3x3 lattice of each surviving 2h cell),
    corner values and the crossing test all stay on the GPU; only the corner positions, the
    per-level values and the crossing cells' corner indices come back for marching cubes.
    """
    n = torch.as_tensor(grid.n, device=dev)
    lo = torch.as_tensor(grid.lo, device=dev)
    levels = torch.as_tensor(lv, device=dev)
    size = 1 << top
    counts = -(-grid.n // size)
    axes = [torch.arange(int(c), device=dev) for c in counts]
    cells = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    scale = float(np.abs(grid.lo).max() + grid.n.max() * grid.h)
    eps = 1e-6 * scale
    evaluations = 0
    for step, k in enumerate(range(top, 0, -1)):
        size = 1 << k
        tracker.stage(0.3 * step / top, 0.3 * (step + 1) / top)
        radius = 0.5 * math.sqrt(3.0) * size * grid.h * (1.0 + 1e-4) + eps
        kids = _t_children(cells, size, n) if step > 0 else cells
        kept = []
        for a in range(0, len(kids), batch_size):
            tracker.report(a / max(len(kids), 1))
            kb = kids[a : a + batch_size]
            centres = lo + (kb.double() + 0.5) * (size * grid.h)
            if hasattr(field, "prune_bounds"):
                two_d, one_d = field.prune_bounds(centres.float(), lv)
            else:
                one_d = _t_evaluate(field, centres)[:, None] - levels[None, :]
                two_d = one_d.abs()
            one_sided = ((kb == 0) | ((kb + 1) * size >= n)).any(dim=1)
            two = (two_d <= radius).any(dim=1)
            one = (one_d <= radius).any(dim=1)
            kept.append(kb[torch.where(one_sided, one, two)])
        evaluations += len(kids)
        cells = torch.cat(kept) if kept else kids[:0]

    # Corners of all children of the surviving 2h cells: the 3x3x3 lattice of each parent.
    tracker.stage(0.3, 0.9)
    lattice = torch.from_numpy(LATTICE).to(dev)
    lat = (2 * cells[:, None, :] + lattice[None]).reshape(-1, 3)
    sx, sy = int(grid.stride[0]), int(grid.stride[1])
    outside = (lat > n).any(dim=1)
    keys = lat[:, 0] + sx * (lat[:, 1] + sy * lat[:, 2])
    keys[outside] = -1  # corners of children outside the grid; never used below
    uniq, inv = torch.unique(keys, return_inverse=True)
    inv = inv.reshape(-1, 27)
    valid = uniq >= 0
    ukeys = uniq.clamp_min(0)
    ijk = torch.stack([ukeys % sx, (ukeys // sx) % sy, ukeys // (sx * sy)], dim=1)
    positions = lo + ijk.double() * grid.h
    # The filler for corners off the grid is no corner: NaN, never referenced by a cell.
    positions = torch.where(valid[:, None], positions, torch.full_like(positions, math.nan))
    values = torch.zeros(len(uniq), dtype=torch.float64, device=dev)
    vidx = torch.nonzero(valid).reshape(-1)
    for a in range(0, len(vidx), batch_size):
        tracker.report(a / max(len(vidx), 1))
        ix = vidx[a : a + batch_size]
        values[ix] = _t_evaluate(field, positions[ix])
    evaluations += len(vidx)
    on_boundary = ((ijk == 0) | (ijk == n)).any(dim=1)

    # Children (8 per parent) and their 8 corners as lattice indices i + 3 j + 9 k.
    tracker.stage(0.9, 0.95)
    child = torch.from_numpy(CHILDREN).to(dev)  # (8, 3)
    corner = torch.from_numpy(CUBE_CORNERS).to(dev)  # (8, 3)
    lat_of = child[:, None, :] + corner[None, :, :]  # (8 children, 8 corners, 3)
    lat_idx = (lat_of[..., 0] + 3 * lat_of[..., 1] + 9 * lat_of[..., 2]).reshape(-1)
    gi = inv[:, lat_idx].reshape(-1, 8)  # (8 P, 8) indices into uniq
    kid_cells = (2 * cells[:, None, :] + child[None]).reshape(-1, 3)
    inside = (kid_cells < n).all(dim=1)
    gi = gi[inside]
    delta = 1e-6 * grid.h
    level_values, crossing = [], []
    for level in lv:
        level = float(level)
        sv = values.clone()
        near = (sv - level).abs() < delta
        up = torch.full_like(sv, level + delta)
        sv = torch.where(near, torch.where(sv >= level, up, up - 2 * delta), sv)
        sv = torch.where(on_boundary, torch.clamp_min(sv, level + delta), sv)
        v = sv[gi]
        cross = (v.min(dim=1).values < level) & (v.max(dim=1).values > level)
        level_values.append(sv.cpu().numpy())
        crossing.append(gi[cross].cpu().numpy())
    return positions.cpu().numpy(), level_values, crossing, evaluations


def extract_levels(
    field: DistanceField,
    levels: Sequence[float],
    resolution: int = 256,
    margin: float | None = None,
    batch_size: int = 65536,
    device=None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
    sharp: bool = False,
) -> list[ExtractResult]:
    """Extract closed meshes of several level sets ``{x : f(x) = level}`` of one field.

    Parameters
    ----------
    field : DistanceField
        1-Lipschitz field, negative inside, in object units (see :mod:`.sdf`).
    levels : sequence of float
        Levels (offsets) in field units; ``0`` is the surface itself, positive levels grow
        it, negative levels shrink it. All levels share one hierarchy and one set of
        field evaluations.
    resolution : int
        Cells along the longest side of the grid (>= 16). Cells are cubes of side
        ``h = longest side / resolution``.
    margin : float, optional
        Distance (field units) added on every side of ``field.bounds()`` on top of
        ``max(max(levels), 0)``. Default: 3 cells plus 2% of the bounds' diagonal.
    batch_size : int
        Points per field call.
    device : torch.device or str, optional
        Where the field is evaluated; ``None`` keeps the points on the CPU.
    progress : callable ``(done: int, total: int) -> None``, optional
        Called between batches; ``total`` is fixed for the call.
    cancel : callable ``() -> bool``, optional
        Polled between batches; returning ``True`` raises :class:`CancelledError`.
    sharp : bool
        Dual contouring (:mod:`.contour`) instead of marching cubes, so creases and corners
        stay sharp; a level where it cannot give a closed manifold keeps marching cubes.

    Returns
    -------
    list of ExtractResult
        One per level, in the given order. A level the field never reaches gives an empty
        mesh (0 vertices, 0 faces).

    Raises
    ------
    BadInputError
        Bad parameters, invalid bounds, or a field that returns NaN.
    CancelledError
        ``cancel()`` returned ``True``.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import SphereField
    >>> shell, inner = extract_levels(SphereField(radius=1.0), [0.0, -0.5], resolution=64)
    >>> shell.vertices.shape[1], inner.faces.dtype
    (3, dtype('int64'))
    """
    t0 = time.perf_counter()
    lv = np.asarray(list(levels), dtype=np.float64).reshape(-1)
    if len(lv) == 0 or not np.all(np.isfinite(lv)):
        raise BadInputError("Give at least one level, and only finite numbers.")
    if int(resolution) != resolution or resolution < _MIN_RESOLUTION:
        raise BadInputError(
            f"resolution must be an integer >= {_MIN_RESOLUTION}, got {resolution}."
        )
    if int(batch_size) != batch_size or batch_size < 1:
        raise BadInputError(f"batch_size must be a positive integer, got {batch_size}.")
    resolution, batch_size = int(resolution), int(batch_size)
    tracker = _Progress(progress, cancel)
    tracker.check_cancel()

    grid = _make_grid(field, lv, resolution, margin)
    if grid is None:  # bounds of zero size and nothing to grow them: no surface to find
        lo = np.asarray(field.bounds()[0], dtype=np.float64).reshape(3)
        seconds = time.perf_counter() - t0
        return [
            ExtractResult(
                np.zeros((0, 3)),
                np.zeros((0, 3), np.int64),
                float(v),
                ExtractStats(0, 1, 0.0, seconds, 0, 0, (0, 0, 0), 0.0, (lo, lo)),
            )
            for v in lv
        ]
    dense = int(np.prod(grid.n + 1))
    dc = None
    if sharp:

        def dc(grid, positions, values, active, level):
            tracker.check_cancel()
            return dual_contour(
                field, grid.lo, grid.h, grid.n, positions, values, active, level, batch_size, device
            )

    # Start at 8 to 16 cells along the longest axis; always at least one split so the last
    # step can go straight from cells of side 2h to corner values (see below).
    top = max(1, int(math.floor(math.log2(int(grid.n.max()) / 8))))
    cuda = _cuda_device(device)
    if cuda is not None:
        positions, level_values, crossing, evaluations = _levels_on_device(
            field, grid, lv, batch_size, cuda, tracker, top
        )
        if hasattr(field, "prune_bounds"):
            positions, level_values, crossing, more = _close_up(
                field, grid, positions, level_values, crossing, lv, batch_size, cuda, tracker
            )
            evaluations += more
        return _meshes(
            grid, lv, positions, level_values, crossing, evaluations, dense, tracker, t0, dc
        )
    parents, evaluations = _prune(grid, lv, batch_size, device, field, tracker, top)

    # The last split skips the centre test: evaluating the corners of all children of the
    # surviving 2h cells costs fewer evaluations than testing the 8 child centres first and
    # then evaluating the corners of the survivors; corner signs decide exactly instead.
    keys = _corner_keys(grid, parents)
    tracker.stage(0.3, 0.9)
    positions = np.empty((len(keys), 3), dtype=np.float64)
    values = np.empty(len(keys), dtype=np.float64)
    on_boundary = np.empty(len(keys), dtype=bool)
    for a in range(0, len(keys), batch_size):
        tracker.report(a / len(keys))
        ijk = grid.corner_ijk(keys[a : a + batch_size])
        positions[a : a + batch_size] = grid.corner_positions(ijk)
        values[a : a + batch_size] = _evaluate(field, positions[a : a + batch_size], device)
        on_boundary[a : a + batch_size] = np.any((ijk == 0) | (ijk == grid.n), axis=1)
    evaluations += len(keys)

    tracker.stage(0.9, 0.95)
    delta = 1e-6 * grid.h
    level_values = [_level_values(values, on_boundary, float(level), delta) for level in lv]
    del values, on_boundary
    crossing = _crossing_cells(grid, parents, keys, level_values, lv)
    del parents, keys
    if hasattr(field, "prune_bounds"):
        # Its pruning bounds where it may cross, not where it may jump: follow the surface.
        positions, level_values, crossing, more = _close_up(
            field, grid, positions, level_values, crossing, lv, batch_size, device, tracker
        )
        evaluations += more
    return _meshes(grid, lv, positions, level_values, crossing, evaluations, dense, tracker, t0, dc)


# The 6 faces of a cube: the axis across it, which side (0 or 1), its 4 corner slots.
_FACES = [
    (a, side, np.flatnonzero(CUBE_CORNERS[:, a] == side)) for a in range(3) for side in (0, 1)
]


def _close_up(
    field, grid: _Grid, positions, level_values, crossing, lv, batch_size, device, tracker
):
    """Add the cells a surface runs into but pruning dropped, until every surface is closed.

    A cell face whose corners straddle a level is crossed by that level's surface, so the
    cell on its other side holds surface too; marching cubes closes a surface exactly when
    every such neighbour is there. Pruning guarantees that for a field that is its own
    Lipschitz bound; a field that only bounds where it *may* cross (``prune_bounds``) can
    jump across a level where its bound did not look. Such a surface is followed here, cell
    by cell from the crossing cells, evaluating only the corners not yet known: it comes out
    closed whatever the field, and where the bound held nothing is added.

    Returns ``positions, level_values, crossing`` (extended) and the evaluations made.
    Corners of ``positions`` that are not on the grid are NaN (the device path's filler).
    """
    delta = 1e-6 * grid.h
    n = grid.n
    valid = np.flatnonzero(np.all(np.isfinite(positions), axis=1))
    known = grid.corner_keys(np.rint((positions[valid] - grid.lo) / grid.h).astype(np.int64))
    order = np.argsort(known)
    known, known_at = known[order], valid[order]
    values = list(level_values)
    crossing = list(crossing)
    # A cell is named by its first corner (CUBE_CORNERS[0] is the origin).
    frontier = [np.rint((positions[c[:, 0]] - grid.lo) / grid.h).astype(np.int64) for c in crossing]
    active = [np.sort(grid.corner_keys(c)) for c in frontier]
    front_gi = list(crossing)
    evaluations = 0
    while any(len(f) for f in frontier):
        tracker.check_cancel()
        wanted = []
        for l, level in enumerate(lv):
            ijk, gi, s = frontier[l], front_gi[l], values[l]
            found = []
            for axis, side, slots in _FACES:
                v = s[gi[:, slots]]
                nb = ijk[(v.min(axis=1) < level) & (v.max(axis=1) > level)].copy()
                nb[:, axis] += 2 * side - 1
                found.append(nb[np.all((nb >= 0) & (nb < n), axis=1)])
            keys = np.unique(grid.corner_keys(np.concatenate(found)))
            wanted.append(keys[~np.isin(keys, active[l], assume_unique=True)])
        if not any(len(w) for w in wanted):
            break
        # Corners of the wanted cells that no one has evaluated yet.
        cells = [grid.corner_ijk(w) for w in wanted]
        ck = np.unique(
            np.concatenate(
                [
                    grid.corner_keys((c[:, None, :] + CUBE_CORNERS[None]).reshape(-1, 3))
                    for c in cells
                ]
            )
        )
        at = np.searchsorted(known, ck).clip(max=max(len(known) - 1, 0))
        new = ck[known[at] != ck] if len(known) else ck
        if len(new):
            ijk_new = grid.corner_ijk(new)
            P = grid.corner_positions(ijk_new)
            raw = np.concatenate(
                [
                    _evaluate(field, P[a : a + batch_size], device)
                    for a in range(0, len(P), batch_size)
                ]
            )
            evaluations += len(P)
            edge = np.any((ijk_new == 0) | (ijk_new == n), axis=1)
            for l, level in enumerate(lv):
                values[l] = np.concatenate([values[l], _level_values(raw, edge, level, delta)])
            index = np.arange(len(positions), len(positions) + len(new))
            positions = np.concatenate([positions, P])
            known = np.concatenate([known, new])
            known_at = np.concatenate([known_at, index])
            order = np.argsort(known, kind="stable")
            known, known_at = known[order], known_at[order]
        for l, level in enumerate(lv):
            c = cells[l]
            ck = grid.corner_keys((c[:, None, :] + CUBE_CORNERS[None]).reshape(-1, 3))
            gi = known_at[np.searchsorted(known, ck)].reshape(-1, 8)
            v = values[l][gi]
            cross = (v.min(axis=1) < level) & (v.max(axis=1) > level)
            frontier[l], front_gi[l] = c[cross], gi[cross]
            crossing[l] = np.concatenate([crossing[l], gi[cross]])
            active[l] = np.union1d(active[l], wanted[l])
    return positions, values, crossing, evaluations


def _meshes(grid, lv, positions, level_values, crossing, evaluations, dense, tracker, t0, dc):
    """Marching cubes (or dual contouring, ``dc``) for each level on the crossing cells, and
    the results with their stats."""
    shape = tuple(int(v) for v in grid.n)
    results = []
    for idx, (level, s, active) in enumerate(zip(lv, level_values, crossing, strict=True)):
        tracker.stage(0.95 + 0.05 * idx / len(lv), 0.95 + 0.05 * (idx + 1) / len(lv))
        V, F = np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
        mesh = dc(grid, positions, s, active, float(level)) if dc and len(active) else None
        if mesh is not None:
            V, F = _clean(*mesh)
        if len(active) and (mesh is None or not is_watertight(F)):
            V, F = _clean(*igl.marching_cubes(s, positions, active, float(level))[:2])
        stats = ExtractStats(
            evaluations=evaluations,
            dense_evaluations=dense,
            ratio=evaluations / dense,
            seconds=0.0,
            active_cells=len(active),
            resolution=int(grid.n.max()),
            shape=shape,
            cell_size=grid.h,
            grid_bounds=(grid.lo.copy(), grid.lo + grid.n * grid.h),
        )
        results.append(ExtractResult(V, F, float(level), stats))
        tracker.report(1.0)
    seconds = time.perf_counter() - t0
    for r in results:
        r.stats.seconds = seconds
    return results


def extract(field: DistanceField, level: float = 0.0, **kw) -> ExtractResult:
    """Extract one closed level-set mesh; see :func:`extract_levels` for the parameters.

    Examples
    --------
    >>> from lipsdf_blender.core.fields.sdf import BoxField
    >>> mesh = extract(BoxField(half_size=(1.0, 0.5, 0.25)), level=0.1, resolution=64)
    >>> mesh.vertices.dtype, mesh.level
    (dtype('float64'), 0.1)
    """
    return extract_levels(field, [level], **kw)[0]
