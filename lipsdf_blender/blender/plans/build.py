"""Plans of the build operators: train, remesh, offset and CSG (see :mod:`..operators.build`)."""

from __future__ import annotations

from ...core.errors import BadInputError
from ...jobrunner import Delivery, Request
from ...worker import protocol as P
from .common import (
    Outcome,
    Plan,
    Settings,
    Source,
    check_op,
    count_requests,
    exact_request,
    preview_request,
    remesh_params,
    remeshed_first,
    train_missing,
)

#: The key of a CSG result in ``Outcome.meshes``.
CSG_RESULT = "<csg>"


def plan_train(sources: list[Source], s: Settings) -> Plan:
    """Train a field for every source (also those that have one)."""
    outcome = Outcome()
    retrain = [Source(x.name, x.kind, x.arrays, init_file=x.init_file) for x in sources]
    yield from train_missing(retrain, s, outcome)
    return outcome


def plan_remesh(sources: list[Source], s: Settings) -> Plan:
    """Train where needed, then extract every field's zero level set: ``meshes[name]``.

    Every mesh without a field in signed mode first gets a coarse preview
    (:func:`~.common.preview_request`, a fraction of a second), delivered with
    ``final=False``: the operator shows it as the result object, whose mesh the full remesh
    then replaces. Every preview comes before every full remesh, so each shape shows at once.
    Closed meshes (:func:`~.common.remeshed_first`) are then remeshed from their exact
    distance, and each is delivered at once (a :class:`~lipsdf_blender.jobrunner.Delivery`:
    the operator builds it while the fields train); their fields are trained after, and not
    extracted again (the same mesh). Open meshes and soups keep their preview until their
    field is trained and extracted. An exact remesh with nothing inside (an inside-out mesh)
    is not delivered: that source trains first, as an open one does (and the operator
    replaces its preview, if one was shown, with the mesh extracted after training).
    Requests: :func:`remesh_requests`.
    """
    outcome = Outcome()
    first = [src for src in sources if remeshed_first(src, s)]
    for src in sources:
        request = preview_request(src, s)
        if request is None:
            continue
        result = yield request
        info = dict(result.get("info") or {})
        if info.get("empty"):
            continue
        # an outcome of its own: the plan's holds only final meshes
        preview = Outcome(meshes={src.name: P.load_meshes(result["files"]["meshes"])})
        preview.info[src.name] = info
        yield Delivery(preview, [src.name], final=False)
    for src in first:
        result = yield exact_request(src, s)
        info = dict(result.get("info") or {})
        if info.get("empty"):
            continue
        outcome.meshes[src.name] = P.load_meshes(result["files"]["meshes"])
        outcome.info[src.name] = info
        yield Delivery(outcome, [src.name])
    files = yield from train_missing(sources, s, outcome)
    for src in sources:
        if src.name in outcome.meshes:
            continue  # remeshed before its training: the field gives the same mesh
        params = {"field": files[src.name], "levels": [0.0], "device": s.device}
        params.update(faces=int(s.faces), **remesh_params(s))
        result = yield Request(P.EXTRACT, params, label=f"{src.name}: remeshing")
        outcome.meshes[src.name] = P.load_meshes(result["files"]["meshes"])
        outcome.info[src.name] = dict(result.get("info") or {})
    return outcome


def remesh_requests(sources: list[Source], s: Settings) -> int:
    """How many worker jobs :func:`plan_remesh` runs (the progress bar's overall fraction):
    a training and an extract (or an ``exact_remesh`` in its place) per source without a
    field, an extract per other source, and a preview per mesh that gets one."""
    previews = sum(preview_request(src, s) is not None for src in sources)
    return count_requests(sources) + previews


def plan_offset(sources: list[Source], s: Settings, distances, exact: bool = True) -> Plan:
    """Train where needed, then the surfaces at ``distances`` (object units) of every field:
    ``meshes[name]``, one mesh a distance."""
    distances = [float(d) for d in distances]
    if not distances:
        raise BadInputError("give at least one offset distance")
    outcome = Outcome()
    files = yield from train_missing(sources, s, outcome)
    for src in sources:
        params = {"field": files[src.name], "distances": distances, "exact": exact}
        params.update(device=s.device, faces=int(s.faces), **remesh_params(s))
        result = yield Request(P.OFFSET, params, label=f"{src.name}: offsetting")
        outcome.meshes[src.name] = P.load_meshes(result["files"]["meshes"])
    return outcome


def plan_csg(sources: list[Source], s: Settings, op: str, blend: float = 0.0) -> Plan:
    """Train where needed, then combine the fields in world space (``sources[0]`` first):
    ``meshes[CSG_RESULT]``."""
    check_op(op)
    if len(sources) < 2:
        raise BadInputError("CSG needs two or more objects: the active one and another")
    outcome = Outcome()
    files = yield from train_missing(sources, s, outcome)
    params = {
        "op": op,
        "fields": [files[x.name] for x in sources],
        "blend": float(blend),
        "matrices": [x.world_matrix for x in sources],
    }
    params.update(device=s.device, faces=int(s.faces), **remesh_params(s))
    result = yield Request(P.CSG, params, label=f"{sources[0].name}: {op}")
    outcome.meshes[CSG_RESULT] = P.load_meshes(result["files"]["meshes"])
    return outcome
