"""Plans of the 3D-printing operators: wall thickness and hollowing (see
:mod:`..operators.printing`)."""

from __future__ import annotations

import numpy as np

from ...core.errors import BadInputError
from ...jobrunner import Request
from ...worker import protocol as P
from .common import Outcome, Plan, Settings, Source, remesh_params, train_missing


def plan_thickness(
    sources: list[Source], points: dict, s: Settings, exact: bool = True, gap: float = 0.0
) -> Plan:
    """Train where needed, then the wall thickness of each source at ``points[name]`` (its own
    vertices, object units; balls may stand ``gap`` off the surface, see
    :func:`...core.tools.printing.thickness`): ``arrays[name]["thickness"]``."""
    outcome = Outcome()
    files = yield from train_missing(sources, s, outcome)
    for src in sources:
        params = {"field": files[src.name], "points": "input.npz", "exact": bool(exact)}
        params.update(**remesh_params(s), gap=float(gap))
        arrays = {"points": np.asarray(points[src.name], dtype=np.float64)}
        result = yield Request(P.THICKNESS, params, arrays, f"{src.name}: measuring walls")
        outcome.keep(src.name, result, "values")
    return outcome


def plan_hollow(sources: list[Source], s: Settings, wall: float) -> Plan:
    """Train where needed, then each object's shell of wall thickness ``wall`` (object units):
    ``meshes[name]`` (one closed mesh) and ``info[name]`` (volumes)."""
    wall = float(wall)
    if not wall > 0:
        raise BadInputError(f"the wall thickness must be positive, got {wall:g}")
    outcome = Outcome()
    files = yield from train_missing(sources, s, outcome)
    for src in sources:
        params = {"field": files[src.name], "wall": wall, "faces": int(s.faces), **remesh_params(s)}
        result = yield Request(P.HOLLOW, params, label=f"{src.name}: hollowing")
        outcome.meshes[src.name] = P.load_meshes(result["files"]["meshes"])
        outcome.info[src.name] = dict(result.get("info") or {})
    return outcome
