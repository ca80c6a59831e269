"""Training samples: points in a loose box and near the geometry, labelled inside/outside.

All of this works in the *normalised* frame where the input's bounding box is centred at the
origin and its longest half-side is 1 (see :func:`normalization`). Labels follow the hKR
convention ``y = +1`` outside and ``y = -1`` inside (or "on the geometry" in unsigned mode).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.spatial import cKDTree

from ..errors import BadInputError, CancelledError
from ..inputs.cloud import closure_samples, prepare_cloud, settle_unsure
from ..inputs.geometry import Geometry
from ..inputs.normals import winding_number as points_winding_number
from ..inputs.winding import mesh_winding_number
from ..phases import phase
from .presets import SampleConfig

#: Half-side of the sampling box for point clouds (normalised units; meshes use the config's).
CLOUD_BOX = 1.6


@dataclass
class Samples:
    """Labelled training points in the normalised frame.

    Attributes
    ----------
    points : (n, 3) float32
    labels : (n,) float32, +1 outside, -1 inside (signed) or on the geometry (unsigned)
    seconds : float
        Time spent sampling and labelling.
    prepared : PreparedCloud or None
        Point clouds: the points, normals and areas the labels came from, and the report of
        what :func:`cloud.prepare_cloud` did (``prepared.report``).
    """

    points: np.ndarray
    labels: np.ndarray
    seconds: float = 0.0
    prepared: object = None


def normalization(geom: Geometry) -> tuple[np.ndarray, float]:
    """Centre and scale that map the geometry's bounding box into ``[-1, 1]^3``.

    Returns
    -------
    center : (3,) float64, object units
    scale : float
        Normalised units per object unit: ``x_n = (x - center) * scale``.
    """
    lo, hi = geom.bounds()
    half = 0.5 * float(np.max(hi - lo))
    if not np.isfinite(half) or half <= 0:
        raise BadInputError("the input has no extent; it needs at least two distinct points")
    return 0.5 * (lo + hi), 1.0 / half


def sample_on_geometry(geom: Geometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` points on the geometry (area-uniform on faces, length-uniform on edges).

    Parameters
    ----------
    geom : Geometry
        In whatever frame its vertices are.
    n : int
    rng : numpy Generator

    Returns
    -------
    (n, 3) float64
    """
    V = geom.vertices
    if geom.kind == "mesh":
        F = geom.faces
        area = 0.5 * np.linalg.norm(
            np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]]), axis=1
        )
        if area.sum() <= 0:
            raise BadInputError(
                "Every face of the mesh has zero area (its vertices lie on one line or points), "
                "so there is no surface to learn. Check that the object is not collapsed."
            )
        fi = rng.choice(len(F), size=n, p=area / area.sum())
        u, v = rng.random(n), rng.random(n)
        flip = u + v > 1
        u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
        a, b, c = V[F[fi, 0]], V[F[fi, 1]], V[F[fi, 2]]
        return a + u[:, None] * (b - a) + v[:, None] * (c - a)
    if geom.kind == "curve":
        E = geom.edges
        length = np.linalg.norm(V[E[:, 1]] - V[E[:, 0]], axis=1)
        if length.sum() <= 0:
            raise BadInputError(
                "Every edge of the curve has zero length, so there is no curve to learn. Check "
                "that the object is not collapsed."
            )
        ei = rng.choice(len(E), size=n, p=length / length.sum())
        t = rng.random(n)[:, None]
        return V[E[ei, 0]] * (1 - t) + V[E[ei, 1]] * t
    return V[rng.integers(0, len(V), size=n)]


class WindingNumber:
    """Generalised winding number of a mesh, soup or oriented point cloud (libigl's fast one).

    Point clouds go through :func:`cloud.prepare_cloud` (normals used or estimated and
    oriented, per-point areas), kept as ``self.prepared`` (``None`` for meshes).
    """

    def __init__(
        self, geom: Geometry, normals: str = "auto", noise: float | None = None, cell: float = 0.0
    ):
        self.geom = geom
        self.prepared = None
        if geom.kind == "mesh":
            self.V = np.ascontiguousarray(geom.vertices, dtype=np.float64)
            self.F = np.ascontiguousarray(geom.faces, dtype=np.int64)
        elif geom.kind == "points":
            with phase("prepare"):
                c = prepare_cloud(geom.vertices, geom.normals, normals, noise, cell)
            self.P, self.N, self.A, self.prepared = c.points, c.normals, c.areas, c
        else:
            raise BadInputError("a curve encloses no volume; train it in unsigned mode")

    @phase("label")
    def inside(self, Q: np.ndarray, cancel=None, settled: list | None = None) -> np.ndarray:
        """Inside (True) or outside at ``Q (k, 3)``: ``w > 1/2``, and for point clouds the
        holes settled by :func:`cloud.settle_unsure` (those queries appended to ``settled``)."""
        W = self(Q, cancel=cancel)
        if self.prepared is None:
            return W > 0.5
        return settle_unsure(self.prepared, np.asarray(Q, dtype=np.float64), W, settled)

    def __call__(self, Q: np.ndarray, chunk: int = 1_000_000, cancel=None) -> np.ndarray:
        """Winding numbers at ``Q (k, 3)`` (same frame as the geometry); returns ``(k,)``."""
        out = np.empty(len(Q))
        for s in range(0, len(Q), chunk):
            if cancel is not None and cancel():
                raise CancelledError("labelling was cancelled")
            q = np.ascontiguousarray(Q[s : s + chunk], dtype=np.float64)
            if self.geom.kind == "mesh":
                out[s : s + chunk] = mesh_winding_number(self.V, self.F, q)
            else:
                # The wrapper merges coincident points, which crash libigl's octree.
                out[s : s + chunk] = points_winding_number(self.P, self.N, self.A, q)
        return out


def make_samples(
    geom_n: Geometry,
    mode: str = "signed",
    config: SampleConfig | None = None,
    seed: int = 0,
    thickness: float = 0.01,
    cancel=None,
    normals: str = "auto",
    noise: float | None = None,
) -> Samples:
    """Draw and label training points for a geometry already in the normalised frame.

    Parameters
    ----------
    geom_n : Geometry
        The input, normalised (see :func:`normalization`).
    mode : {"signed", "unsigned"}
        ``signed``: inside/outside from the winding number (> 0.5 is inside).
        ``unsigned``: points on the geometry are labelled -1, everything else +1; points closer
        to the geometry than ``thickness`` are dropped from the +1 set.
    config : SampleConfig
    seed : int
        Same seed, same samples.
    thickness : float
        Normalised units; only used in unsigned mode.
    cancel : callable returning bool, optional
    normals : {"auto", "estimate"}
        Point clouds: use their normals when they have them, or always estimate.
    noise : float, optional
        Point clouds: noise level in normalised units (``None``: estimated).

    Returns
    -------
    Samples
    """
    import time

    t0 = time.perf_counter()
    cfg = config or SampleConfig()
    if geom_n.kind == "points" and mode == "signed":
        # A cloud's closure may reach past its points (a base never scanned, up to about a
        # third of its size): the box must hold it.
        cfg = replace(cfg, box=max(cfg.box, CLOUD_BOX))
    rng = np.random.default_rng(seed)
    n_sig = max(len(cfg.sigmas), 1)
    per = cfg.n_surface // n_sig
    on = sample_on_geometry(geom_n, per * n_sig, rng)
    near = on + rng.normal(size=on.shape) * np.repeat(np.asarray(cfg.sigmas), per)[:, None]
    uni = rng.uniform(-cfg.box, cfg.box, size=(cfg.n_uniform, 3))
    near = np.clip(near, -cfg.box, cfg.box)

    if mode == "unsigned":
        tree = cKDTree(sample_on_geometry(geom_n, max(200_000, 4 * per), rng))
        pts = np.concatenate([near, uni])
        d, _ = tree.query(pts, workers=-1)
        pts = pts[d > thickness]
        on_pts = sample_on_geometry(geom_n, len(pts) // 2, rng)
        P = np.concatenate([on_pts, pts])
        y = np.concatenate([-np.ones(len(on_pts)), np.ones(len(pts))])
    elif mode == "signed":
        wn = WindingNumber(geom_n, normals=normals, noise=noise, cell=cfg.cloud_cell)
        settled: list = []
        P = np.concatenate([near, uni])
        # Candidates for balancing, drawn in the input's box (the inside is rarer in a loose
        # box) and labelled in the same call: libigl builds its tree on each call, which
        # costs as much as the queries for a large input.
        lo, hi = geom_n.bounds()
        pool = rng.uniform(lo, hi, size=(cfg.n_surface if cfg.balance else 0, 3))
        y = np.where(wn.inside(np.concatenate([P, pool]), cancel, settled), -1.0, 1.0)
        y, pool = y[: len(P)], (pool, y[len(P) :], lo, hi)
        if settled:
            # A hole closed by the fitted sphere gets near-surface points like the rest.
            Q = np.concatenate(settled)[: per // 2]
            X, inside = closure_samples(wn.prepared, Q, cfg.sigmas, rng)
            X = np.clip(X, -cfg.box, cfg.box)
            P, y = np.concatenate([P, X]), np.concatenate([y, np.where(inside, -1.0, 1.0)])
        if not (y < 0).any():
            no_inside(wn, P)
        if cfg.balance:
            P, y = balance(P, y, wn, cfg, rng, cancel, pool)
    else:
        raise BadInputError(f"unknown mode {mode!r}; use 'signed' or 'unsigned'")
    if not (y < 0).any() or not (y > 0).any():
        raise BadInputError(
            "No sample point fell inside the shape, so it encloses no volume (an open sheet or "
            "a curve?). Train it in unsigned mode instead."
        )
    prepared = None if mode == "unsigned" else wn.prepared
    return Samples(P.astype(np.float32), y.astype(np.float32), time.perf_counter() - t0, prepared)


def no_inside(wn: WindingNumber, P: np.ndarray) -> None:
    """Say why no point of ``P (k, 3)`` came out inside: raises :class:`BadInputError`.

    A closed mesh whose faces all point inwards has winding number -1 inside, which reads as
    outside everywhere; anything else without an inside (a flat sheet, an open surface)
    encloses no volume.
    """
    if wn.prepared is None and (wn(P[:100_000]) < -0.5).any():
        raise BadInputError(
            "The mesh is inside out: its faces point inwards, so nothing reads as inside. "
            "Flip its normals (in Blender: Mesh > Normals > Recalculate Outside) and retry."
        )
    what = "mesh" if wn.prepared is None else "point cloud"
    raise BadInputError(
        f"The {what} encloses no volume (an open sheet?): no sample point fell inside it. "
        "Train it in unsigned mode instead, or close it (e.g. fill its holes, or Solidify a "
        "sheet)."
    )


def balance(P, y, wn, cfg: SampleConfig, rng, cancel, pool=None, rounds: int = 8):
    """Draw more uniform points of the rarer class until both classes have the same count.

    ``pool``: labelled candidates ``(points, labels, lo, hi)`` drawn uniformly in the box
    ``[lo, hi]``, used first
    when that box holds every point of the rare class (uniform in it given the class is then
    uniform in the whole box given the class).
    """
    rate = 0.3  # share of candidates of the rare class, updated from each round
    enough = 0.02  # a shortfall below this share of the samples is trimmed, not drawn
    for _ in range(rounds):
        n_in, n_out = int((y < 0).sum()), int((y > 0).sum())
        want = abs(n_in - n_out)
        if want < enough * len(y):
            break
        rare = -1.0 if n_in < n_out else 1.0
        if pool is not None and len(pool[0]):
            X, yx, lo, hi = pool
            have = P[y == rare]
            if rare < 0 and len(have) and (have >= lo).all() and (have <= hi).all():
                keep = X[yx == rare][:want]
                P, y = np.concatenate([P, keep]), np.concatenate([y, np.full(len(keep), rare)])
                rate = max(float((yx == rare).mean()), 1e-3)
                # a little short: trimming the common class costs less than another call
                enough = 0.1
            pool = None
            continue
        # Uniform in the box around the rare class's points (grown a little), which holds all
        # of that class: the same distribution as uniform in the whole box, given the class,
        # with far fewer winding numbers to compute for a small shape in a large box.
        have = P[y == rare]
        if not len(have):
            break  # nothing of that class to grow a box around (make_samples says why)
        pad = 0.05 * cfg.box
        lo = np.maximum(have.min(axis=0) - pad, -cfg.box)
        hi = np.minimum(have.max(axis=0) + pad, cfg.box)
        n_cand = int(min(max(cfg.n_uniform, 1.3 * want / max(rate, 0.02)), 20 * want + 1000))
        cand = rng.uniform(lo, hi, size=(n_cand, 3))
        yc = np.where(wn.inside(cand, cancel=cancel), -1.0, 1.0)
        rate = max(float((yc == rare).mean()), 1e-3)
        keep = cand[yc == rare][:want]
        P, y = np.concatenate([P, keep]), np.concatenate([y, np.full(len(keep), rare)])
    n_in, n_out = int((y < 0).sum()), int((y > 0).sum())
    if n_in and n_out and max(n_in, n_out) > 1.05 * min(n_in, n_out):
        # The rare class stayed rare (a very thin shape): drop part of the common class.
        common = 1.0 if n_out > n_in else -1.0
        idx_common = np.flatnonzero(y == common)
        drop = rng.choice(idx_common, size=len(idx_common) - min(n_in, n_out), replace=False)
        mask = np.ones(len(y), dtype=bool)
        mask[drop] = False
        P, y = P[mask], y[mask]
    return P, y
