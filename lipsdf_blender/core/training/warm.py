"""Warm start: retraining an edited input from the field of its previous version.

Three decisions, each with a fall-back that never fails the training:

- **May the old field be used?** Same architecture (depth, width), mode and input kind (an
  unsigned field also the same thickness), and the new input must lie in the old field's
  normalised box: the new training keeps the OLD normalisation (centre, scale), so the
  network's input frame is unchanged, as long as the new bounds fit in ``[-FIT, FIT]^3`` of
  the old frame and still fill at least ``MIN_FILL`` of it. Otherwise: a cold start, and the
  reason goes into ``record["warm_start"]`` and the log.
- **Which labels can be kept?** The labelled samples of recent trainings stay in memory
  (:data:`MEMO`, two sets; never in the ``.lipsdf``, which goes into the .blend). For a mesh
  whose faces are unchanged and only vertices moved, the winding number changes by exactly the
  winding number of the closed chain *new patch - old patch* (the faces touching a moved
  vertex, at their new and old positions): unchanged faces contribute the same solid angle
  before and after. That chain's winding number is an integer off the chain, 0 outside its
  bounding box, so a label can only change at the few points inside the box where it is not
  0; only those are labelled again (full winding number of the new mesh), plus fresh
  near-surface samples drawn on the new patch. When the chain is not closed (a moved vertex
  on an open rim), the faces changed, or no samples are in memory, all labels are computed.
- **How long to train?** ``Preset.warm_fraction`` of the steps, the learning rate ramped up
  over the first ``WARM_RAMP`` of them to ``Preset.warm_lr`` times the preset's (a fresh Adam
  on a trained network would otherwise take steps as large as at the start) and then cosine
  down as usual, and the hinge weight ``lam`` at its full value from the first step (the
  field is already distance-like; the KR-only phase of a cold start would spread it out).
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import asdict, dataclass

import igl
import numpy as np

from ..errors import CancelledError
from ..inputs.geometry import Geometry
from .presets import SampleConfig
from .sampling import Samples, WindingNumber, balance, sample_on_geometry

log = logging.getLogger("lipsdf.train")

#: The new input may reach this far (normalised units of the old frame; the old input filled
#: ``[-1, 1]``) and the sampling box (1.3) still holds it with room around.
FIT = 1.1
#: Below this half-extent (old frame) the new input would use too little of the network's
#: box: a cold start gives it the whole box.
MIN_FILL = 0.6
#: Share of the warm steps over which the learning rate rises to its peak.
WARM_RAMP = 0.05
#: Labelled sample sets kept in memory (the last trainings of this process).
MEMO_SIZE = 2


@dataclass
class WarmStart:
    """What a warm start starts from: the old network and the frame it works in."""

    net: object  # LipschitzMLP
    center: np.ndarray
    scale: float
    source: str  # the old field's input hash


def check(init, geom: Geometry, mode: str, depth: int, width: int, margin_obj: float | None):
    """Can ``init`` (a :class:`~.field.Field`) start the training of ``geom``?

    Parameters
    ----------
    init : Field
    geom : Geometry
        The new input, object units.
    mode : {"signed", "unsigned"}
    depth, width : int
        The new training's architecture.
    margin_obj : float or None
        Unsigned mode: the new shell's half-thickness in object units, or ``None`` for the
        preset's margin in the old frame.

    Returns
    -------
    (WarmStart, None) or (None, reason)
    """
    net, rec = init.net, init.record or {}
    if (net.depth, net.width) != (depth, width):
        return None, (
            f"the old field is a {net.depth} x {net.width} network and this preset trains "
            f"{depth} x {width}"
        )
    if init.mode != mode:
        return None, f"the old field is {init.mode} and this training is {mode}"
    old_kind = rec.get("input_kind")
    if old_kind is not None and old_kind != geom.kind:
        return None, f"the old field was trained on a {old_kind}, this input is a {geom.kind}"
    if mode == "unsigned" and margin_obj is not None:
        old = float(rec.get("margin", -1.0))
        if abs(old - margin_obj) > 1e-6 * max(abs(old), abs(margin_obj)):
            return None, "the old field was trained with another thickness"
    lo, hi = geom.bounds()
    lo_n, hi_n = (lo - init.center) * init.scale, (hi - init.center) * init.scale
    reach = float(max(np.abs(lo_n).max(), np.abs(hi_n).max()))
    if reach > FIT:
        return None, (
            f"the input grew out of the old field's box (it reaches {reach:.2f} of its "
            f"half-size, at most {FIT} is kept)"
        )
    fill = 0.5 * float(np.max(hi_n - lo_n))
    if fill < MIN_FILL:
        return None, f"the input shrank to {fill:.2f} of the old field's box"
    source = str(rec.get("input_hash", ""))
    return WarmStart(net, init.center.copy(), init.scale, source), None


def schedule(step: int, steps: int, lr: float, lr_final: float) -> float:
    """The warm start's learning rate at ``step`` of ``steps``: a linear ramp from
    ``lr_final`` to ``lr`` over the first :data:`WARM_RAMP`, then cosine down to ``lr_final``."""
    ramp = max(1, int(WARM_RAMP * steps))
    if step < ramp:
        return lr_final + (lr - lr_final) * (step + 1) / ramp
    frac = (step - ramp) / max(steps - ramp - 1, 1)
    return lr_final + 0.5 * (lr - lr_final) * (1 + np.cos(np.pi * min(frac, 1.0)))


# -- labelled samples kept in memory ----------------------------------------------------------
@dataclass
class _Kept:
    samples: Samples
    config: dict


class _Memo:
    """The labelled samples of the last :data:`MEMO_SIZE` mesh trainings, keyed by what
    decides their labels: the input's hash, the mode and the normalised frame."""

    def __init__(self, size: int = MEMO_SIZE):
        self.size = size
        self._items: collections.OrderedDict = collections.OrderedDict()

    @staticmethod
    def key(input_hash: str, mode: str, center, scale: float) -> tuple:
        c = np.asarray(center, dtype="<f8").tobytes()
        return (input_hash, mode, c, float(scale))

    def put(self, key: tuple, samples: Samples, config: SampleConfig) -> None:
        if self.size <= 0:
            return
        self._items[key] = _Kept(samples, _config(config))
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, key: tuple) -> _Kept | None:
        kept = self._items.get(key)
        if kept is not None:
            self._items.move_to_end(key)
        return kept

    def clear(self) -> None:
        self._items.clear()


#: The process's labelled samples (the worker is one long-lived process: an edit after a
#: training finds the old labels here; a new session labels everything again).
MEMO = _Memo()


def _config(cfg: SampleConfig) -> dict:
    d = asdict(cfg)
    d["sigmas"] = [float(s) for s in d["sigmas"]]
    return d


# -- relabelling ----------------------------------------------------------------------------
@dataclass
class Edit:
    """Where a mesh edit that only moved vertices happened (normalised frame).

    ``chain_V``, ``chain_F``: the closed chain *new patch - old patch*; ``lo``, ``hi``: its
    bounding box, outside which no label changed; ``changed``: faces touching a moved vertex.
    """

    V_new: np.ndarray
    F: np.ndarray
    changed: np.ndarray
    moved: int
    chain_V: np.ndarray
    chain_F: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    def inside_box(self, P: np.ndarray, pad: float = 0.0) -> np.ndarray:
        """Indices of ``P (n, 3)`` in the chain's box grown by ``pad``."""
        return np.flatnonzero(np.all((P >= self.lo - pad) & (P <= self.hi + pad), axis=1))


def find_edit(old_surface, geom_n: Geometry, center, scale: float) -> tuple[Edit | None, str]:
    """The edit from the old field's input to ``geom_n`` (both meshes with the same faces),
    or ``(None, reason)`` when it is not a move of vertices that leaves a closed chain."""
    if geom_n.kind != "mesh":
        return None, f"labels are only reused for meshes, not a {geom_n.kind}"
    if old_surface is None or old_surface.S.shape[1] != 3:
        return None, "the old field does not carry its input mesh"
    F = np.asarray(geom_n.faces, dtype=np.int64)
    if old_surface.S.shape != F.shape or not np.array_equal(old_surface.S, F):
        return None, "the edit changed the mesh's faces, not only moved vertices"
    V_new = np.asarray(geom_n.vertices, dtype=np.float64)
    if old_surface.V.shape != V_new.shape:
        return None, "the edit changed the number of vertices"
    # Same arithmetic as the new input's normalisation: a vertex that did not move maps to
    # the same bits.
    V_old = (old_surface.V - center) * scale
    moved = np.any(V_old != V_new, axis=1)
    changed = moved[F].any(axis=1)
    if not _closed_chain(F, changed, moved):
        return None, "the edit moved an open rim (or a non-manifold edge) of the mesh"
    Fc = F[changed]
    used = np.unique(Fc)
    box = np.concatenate([V_old[used], V_new[used]]) if len(used) else np.zeros((1, 3))
    return Edit(
        V_new,
        F,
        changed,
        int(moved.sum()),
        np.concatenate([V_old, V_new]),
        np.concatenate([Fc[:, ::-1], Fc + len(V_old)]),
        box.min(axis=0) - 1e-9,
        box.max(axis=0) + 1e-9,
    ), ""


def relabel(
    kept: _Kept | None,
    edit: Edit,
    geom_n: Geometry,
    cfg: SampleConfig,
    seed: int,
    cancel=None,
) -> tuple[Samples | None, dict]:
    """The old labelled samples, relabelled where the edit can have changed them.

    Parameters
    ----------
    kept : the old training's samples from :data:`MEMO`, or ``None``
    edit : Edit
        From :func:`find_edit`.
    geom_n : Geometry
        The new mesh in the (old) normalised frame.
    cfg : SampleConfig
        The new training's sample settings (must be the old one's).
    seed : int

    Returns
    -------
    (Samples, stats) or (None, {"labels": "recomputed", "labels_reason": ...})
    """
    t0 = time.perf_counter()
    if kept is None:
        reason = "the old field's labelled samples are not in memory (another session)"
        return None, {"labels": "recomputed", "labels_reason": reason}
    if kept.config != _config(cfg):
        return None, {"labels": "recomputed", "labels_reason": "the sample settings changed"}
    old = kept.samples
    P, y = old.points, old.labels.copy()
    stats = {"labels": "reused", "moved_vertices": edit.moved}
    if not edit.changed.any():
        stats.update(relabelled=0, checked=0)
        return Samples(P, y, time.perf_counter() - t0), stats

    # Off the chain its winding number is the change of the mesh's winding number, an
    # integer; outside its box it is 0.
    in_box = edit.inside_box(P)
    delta = np.zeros(len(in_box))
    for s in range(0, len(in_box), 65536):
        if cancel is not None and cancel():
            raise CancelledError("labelling was cancelled")
        q = np.ascontiguousarray(P[in_box[s : s + 65536]], dtype=np.float64)
        delta[s : s + 65536] = igl.winding_number(edit.chain_V, edit.chain_F, q)
    again = in_box[np.abs(delta) > 0.25]

    # Fresh near-surface samples on the new patch, as many as its share of the area asks
    # for; as many old points are dropped at random, so repeated edits do not grow the set.
    rng = np.random.default_rng([seed, 0x5A4D])
    V_new, F = edit.V_new, edit.F
    area = igl.doublearea(V_new, F)
    n_sig = max(len(cfg.sigmas), 1)
    share = area[edit.changed].sum() / max(area.sum(), 1e-300)
    per = int(round(cfg.n_surface // n_sig * share))
    extra = np.zeros((0, 3))
    if per > 0:
        on = sample_on_geometry(Geometry("mesh", V_new, F[edit.changed]), per * n_sig, rng)
        widths = np.repeat(np.asarray(cfg.sigmas), per)[:, None]
        extra = np.clip(on + rng.normal(size=on.shape) * widths, -cfg.box, cfg.box)
    wn = WindingNumber(geom_n)
    Q = np.concatenate([P[again].astype(np.float64), extra])
    inside = wn.inside(Q, cancel=cancel)
    y[again] = np.where(inside[: len(again)], -1.0, 1.0)
    y_extra = np.where(inside[len(again) :], -1.0, 1.0)
    keep = np.ones(len(P), dtype=bool)
    keep[rng.choice(len(P), size=min(len(extra), len(P) // 2), replace=False)] = False
    P2 = np.concatenate([P[keep].astype(np.float64), extra])
    y2 = np.concatenate([y[keep].astype(np.float64), y_extra])
    if cfg.balance:
        P2, y2 = balance(P2, y2, wn, cfg, rng, cancel)
    stats.update(
        relabelled=int(len(again) + len(extra)),
        flipped=int((y[again] != old.labels[again]).sum()),
        checked=int(len(in_box)),
        new_patch_samples=int(len(extra)),
    )
    return Samples(P2.astype(np.float32), y2.astype(np.float32), time.perf_counter() - t0), stats


def focus(samples: Samples, edit: Edit | None, share: float, pad: float) -> Samples:
    """Repeat the samples near the edit (in the chain's box grown by ``pad``) so that they make
    up about ``share`` of the set: the warm steps spend their batches where the field must
    change, while the rest of the samples keep the unchanged part in place."""
    if edit is None or share <= 0 or not edit.changed.any():
        return samples
    idx = edit.inside_box(samples.points, pad)
    n, k = len(samples.labels), len(idx)
    if k == 0 or k >= share * n:
        return samples
    reps = int(np.ceil(share * (n - k) / ((1 - share) * k)))  # k * reps / (n - k + k * reps)
    extra = np.repeat(idx, reps - 1)
    return Samples(
        np.concatenate([samples.points, samples.points[extra]]),
        np.concatenate([samples.labels, samples.labels[extra]]),
        samples.seconds,
        samples.prepared,
    )


def _closed_chain(F: np.ndarray, changed: np.ndarray, moved: np.ndarray) -> bool:
    """Is *new patch - old patch* a closed chain? It is when every edge with a moved end is
    used by the mesh once in each direction (so it has no boundary there); edges with both
    ends fixed are the same before and after and cancel."""
    Fc = F[changed]
    E = np.concatenate([Fc[:, [0, 1]], Fc[:, [1, 2]], Fc[:, [2, 0]]])
    E = E[moved[E].any(axis=1)]
    if len(E) == 0:
        return True
    sign = np.where(E[:, 0] < E[:, 1], 1, -1)
    key = np.sort(E, axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    net = np.zeros(len(uniq), dtype=np.int64)
    np.add.at(net, inv.ravel(), sign)
    return bool(np.all(net == 0))
