"""Plans of the picture operators: a slice and the sphere-traced preview (see
:mod:`..operators.pictures`)."""

from __future__ import annotations

import numpy as np

from ...jobrunner import Request
from ...worker import protocol as P
from .common import Outcome, Plan, Settings, Source, check_op, train_missing

#: The key of the preview in ``Outcome.arrays`` and ``Outcome.info``.
PREVIEW = "<preview>"


def plan_slice(source: Source, s: Settings, plane, pixels, spacing: float) -> Plan:
    """Train where needed, then the field on a plane (``plane``: 4x4, the plane's [-1, 1]^2 to
    world) as pictures of ``pixels`` = (w, h): ``arrays[name]``."""
    outcome = Outcome()
    files = yield from train_missing([source], s, outcome)
    params = {
        "field": files[source.name],
        "matrix": source.world_matrix,
        "plane": np.asarray(plane, dtype=float).tolist(),
        "pixels": [int(pixels[0]), int(pixels[1])],
        "spacing": float(spacing),
    }
    result = yield Request(P.SLICE, params, label=f"{source.name}: slicing")
    outcome.keep(source.name, result, "image")
    return outcome


def plan_render(sources: list[Source], s: Settings, camera: dict, op="union", blend=0.0) -> Plan:
    """Train where needed, then sphere-trace the fields (combined by ``op``, world space) from
    ``camera`` (see the protocol's ``render``): ``arrays[PREVIEW]``."""
    check_op(op)
    outcome = Outcome()
    files = yield from train_missing(sources, s, outcome)
    params = {
        "fields": [files[x.name] for x in sources],
        "matrices": [x.world_matrix for x in sources],
        "op": op,
        "blend": float(blend),
        "camera": camera,
    }
    label = f"{sources[0].name}: sphere tracing" if len(sources) == 1 else "sphere tracing"
    result = yield Request(P.RENDER, params, label=label)
    outcome.keep(PREVIEW, result, "image")
    return outcome
