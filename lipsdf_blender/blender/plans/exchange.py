"""Plan of the hand-over to OpenVDB: a field's narrow band on a grid (see
:mod:`..operators.exchange`)."""

from __future__ import annotations

from ...jobrunner import Request
from ...worker import protocol as P
from .common import Outcome, Plan, Settings, Source, remesh_params, train_missing


def plan_grid(sources: list[Source], s: Settings, voxels: dict, band: float, exact=True) -> Plan:
    """Train where needed, then each field's narrow band on a grid of ``voxels[name]`` (object
    units), ``band`` voxels wide: ``arrays[name]`` (``ijk``, ``values``, ``voxel``)."""
    outcome = Outcome()
    files = yield from train_missing(sources, s, outcome)
    for src in sources:
        params = {"field": files[src.name], "voxel": float(voxels[src.name])}
        params.update(band=float(band), exact=bool(exact), **remesh_params(s))
        result = yield Request(P.GRID, params, label=f"{src.name}: sampling the grid")
        outcome.keep(src.name, result, "grid")
    return outcome
