"""Plans of the query operators: surface points, projection, distances (see
:mod:`..operators.query`)."""

from __future__ import annotations

import numpy as np

from ...jobrunner import Request
from ...worker import protocol as P
from .common import Outcome, Plan, Settings, Source, remesh_params, train_missing


def plan_points(sources: list[Source], s: Settings, n: int, level: float = 0.0) -> Plan:
    """Train where needed, then ``n`` evenly spread points (and normals) on each field's level
    set ``level`` (object units), in the object's own frame: ``arrays[name]``."""
    outcome = Outcome()
    files = yield from train_missing(sources, s, outcome)
    for src in sources:
        params = {"field": files[src.name], "n": int(n), "level": float(level), "seed": s.seed}
        if s.resolution:
            params["resolution"] = int(s.resolution)
        result = yield Request(P.SAMPLE, params, label=f"{src.name}: placing points")
        outcome.keep(src.name, result, "points")
    return outcome


def plan_project(
    source: Source, targets: dict, s: Settings, level: float = 0.0, iterations: int = 100
) -> Plan:
    """Train ``source`` where needed, then move every target's points (world space, ``targets``:
    name -> (n, 3)) onto its field's level set ``level`` (world units): ``arrays[target]``."""
    outcome = Outcome()
    files = yield from train_missing([source], s, outcome)
    for name, points in targets.items():
        params = {
            "field": files[source.name],
            "points": "input.npz",
            "level": float(level),
            "iterations": int(iterations),
            "matrix": source.world_matrix,
        }
        arrays = {"points": np.asarray(points, dtype=np.float64)}
        result = yield Request(P.PROJECT, params, arrays, f"{name}: projecting onto {source.name}")
        outcome.keep(name, result, "points")
    return outcome


def plan_query(source: Source, targets: dict, s: Settings, exact: bool = True) -> Plan:
    """Train ``source`` where needed, then its signed distance and gradient at every target's
    points (world space, ``targets``: name -> (n, 3)), in world units: ``arrays[target]``."""
    outcome = Outcome()
    files = yield from train_missing([source], s, outcome)
    for name, points in targets.items():
        params = {"field": files[source.name], "points": "input.npz"}
        params.update(matrix=source.world_matrix, **remesh_params(s), exact=bool(exact))
        arrays = {"points": np.asarray(points, dtype=np.float64)}
        result = yield Request(P.QUERY, params, arrays, f"{name}: distance to {source.name}")
        outcome.keep(name, result, "values")
    return outcome
