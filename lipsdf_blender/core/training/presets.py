"""Presets and the defaults every front end shares: names, the default preset, the resolution rule.

The CLI, the worker, the batch and the Blender add-on all ask this module; none restates a
default. Standard library only (no numpy, no torch), so a front end's ``--help`` or the
Blender process may import it.

Example
-------
>>> get_preset("fast").steps
2000
>>> resolution_for(None, [{"settings": {"resolution": 256}}])
256
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from ..errors import BadInputError

#: The preset used when none is named: Blender, the CLI, the worker's ``train`` job and the
#: batch alike. ``fast`` is made for a 2-core CPU; ``high`` for a GPU.
DEFAULT_PRESET = "fast"
#: Extraction grids the worker and the CLI accept (cells along the longest side).
RESOLUTION_RANGE = (2, 4096)
#: Cells along the longest side of the coarse preview Blender shows of a closed mesh before
#: its full remesh (issue 22): marching cubes without dual contouring, 0.2-0.5 s for spot or
#: fandisk on a 2-core CPU, within about a cell of the input. A remesh no finer than this
#: gets no preview.
PREVIEW_RESOLUTION = 64


@dataclass
class SampleConfig:
    """How many training points to draw and where.

    Attributes
    ----------
    n_uniform : int
        Points drawn uniformly in the box ``[-box, box]^3`` (normalised units).
    n_surface : int
        Points drawn near the geometry: on it, then moved by Gaussian noise of each width in
        ``sigmas`` (normalised units), the same number for each width.
    box : float
        Half-side of the sampling box in normalised units (the input fills ``[-1, 1]``).
    sigmas : tuple of float
        Noise widths for the near-surface points.
    balance : bool
        Draw extra uniform points until inside and outside counts match (signed mode).
    cloud_cell : float
        Point clouds denser than this (spacing below half of it) are averaged per cube of this
        side before labelling (:func:`cloud.prepare_cloud`); 0: never. Training sets it to
        half a cell of the preset's extraction grid.
    """

    n_uniform: int = 100_000
    n_surface: int = 200_000
    box: float = 1.3
    sigmas: tuple[float, ...] = (0.005, 0.02, 0.08)
    balance: bool = True
    cloud_cell: float = 0.0


@dataclass(frozen=True)
class Preset:
    """Everything that decides the cost and quality of a field (normalised units)."""

    name: str
    depth: int
    width: int
    steps: int
    batch_size: int
    lr: float = 1e-2
    lr_final: float = 1e-5
    margin: float = 5e-3
    # lam = 30 rather than the paper's 100: the KR term then carries more weight and the
    # slope of the field near the surface reaches ~0.9 instead of ~0.6 in the same steps, at
    # the same Chamfer distance (measured on spot; lam = 10 costs Hausdorff distance).
    lam: float = 30.0
    lam_warmup: float = 0.1
    # Keeps each layer's W^T W near diagonal, where T = W^T W and the layer is locally an
    # isometry: without it the field's slope collapses to ~0.3 and offsets land far out.
    ortho: float = 1.0
    bias_shift: float = 0.0
    samples: SampleConfig = field(default_factory=SampleConfig)
    resolution: int = 256
    # Arithmetic of the training steps on a GPU: "fp32", "tf32" (float32 matrix units) or
    # "bf16" (autocast). The bound does not depend on it: the normalisation T is always
    # computed in float32, and the trained weights are folded and evaluated in float32, where
    # every parameter value gives a 1-Lipschitz network. Rounding in a training step only
    # perturbs the gradient. The CPU always trains in float32.
    precision: str = "fp32"
    # On CUDA, capture one whole step (forward, backward, Adam) in a CUDA graph and replay it:
    # a 20 x 128 step is ~350 small kernels whose launch cost exceeds their arithmetic
    # (18.5 ms eager vs 3.4 ms replayed at 8192 points on an H100).
    cuda_graph: bool = True
    # Warm start (retraining an edited input from its old field, :mod:`.warm`): the share of
    # ``steps`` it runs and its peak learning rate as a share of ``lr``. Measured on spot and
    # fandisk (fast preset, a bump on 5 % of the vertices): benchmarks/bench_warm_start.py.
    warm_fraction: float = 0.3
    warm_lr: float = 0.15
    # ... and the share of its training points drawn near the edit (repeated samples).
    warm_focus: float = 0.25


PRESETS: dict[str, Preset] = {
    # Made for a 2-core CPU: a whole remesh in under a minute. Many small steps at a high
    # learning rate move the weights further per second of CPU than large batches do.
    # 2000 steps rather than 3000 (issue 22): a third less training at the same surfaces
    # within the seed spread (bench_peers bunny, Suzanne, open soup; bench_clouds homer
    # partial and sparse); 1500 lost 1-3 % of Chamfer on the open soup and partial clouds.
    "fast": Preset(
        "fast",
        depth=8,
        width=64,
        steps=2000,
        batch_size=1024,
        lr=1.5e-2,
        samples=SampleConfig(n_uniform=60_000, n_surface=180_000),
        resolution=192,
    ),
    "balanced": Preset(
        "balanced",
        depth=12,
        width=96,
        steps=6000,
        batch_size=2048,
        lr=1e-2,
        samples=SampleConfig(n_uniform=150_000, n_surface=450_000),
        resolution=256,
    ),
    # The paper's size: 20 layers of 128; meant for a GPU. Tuned on one H100: a CUDA-graph
    # step of 16384 points takes 3.9 ms in tf32, so 4000 steps train in 15.7 s, to Chamfer
    # 0.055 / 0.113 / 0.047 % on spot / bunny / fandisk (20000 steps of 8192 in bf16: 66 s,
    # 0.059 / 0.107 / 0.041 %). See benchmarks/README.md.
    "high": Preset(
        "high",
        depth=20,
        width=128,
        steps=4000,
        batch_size=16384,
        lr=8e-3,
        bias_shift=0.3,
        samples=SampleConfig(n_uniform=400_000, n_surface=1_600_000),
        resolution=384,
        precision="tf32",
    ),
}


def get_preset(name: str | Preset, **overrides) -> Preset:
    """Look a preset up by name (or pass one through) and apply field overrides."""
    if isinstance(name, Preset):
        p = name
    else:
        if name not in PRESETS:
            raise BadInputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        p = PRESETS[name]
    return replace(p, **overrides) if overrides else p


#: Preset names, cheapest first.
PRESET_NAMES: tuple[str, ...] = tuple(PRESETS)


def resolution_for(given: int | None, records: Iterable[dict] = ()) -> int:
    """The extraction resolution: ``given`` when set, else the largest the fields' records ask.

    A record asks for the resolution of its training settings (the preset's, or an override),
    else for that of its preset by name; a record with neither asks for the default preset's.

    Parameters
    ----------
    given : int or None
        The user's resolution (cells along the longest side); ``None`` or 0: from the records.
    records : iterable of dict
        The ``record`` of each field involved (``Field.record``).
    """
    if given:
        return int(given)
    return max((_record_resolution(r) for r in records), default=_default_resolution())


def _default_resolution() -> int:
    return PRESETS[DEFAULT_PRESET].resolution


def _record_resolution(record: dict) -> int:
    record = record if isinstance(record, dict) else {}
    settings = record.get("settings")
    res = settings.get("resolution") if isinstance(settings, dict) else None
    lo, hi = RESOLUTION_RANGE
    if isinstance(res, int) and not isinstance(res, bool) and lo <= res <= hi:
        return res
    preset = PRESETS.get(record.get("preset"))
    return preset.resolution if preset is not None else _default_resolution()
