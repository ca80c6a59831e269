"""Jobs that build fields and meshes: train, extract, exact_remesh, winding_preview, offset,
csg.

Each ``job_<type>`` takes the running :class:`~..running.Job` and returns ``(files, info)``
for the ``result`` message; every param is checked (:mod:`..params`) before any work.
"""

from __future__ import annotations

from pathlib import Path

from ...core.device import describe, pick_device
from ...core.errors import BadInputError, FieldFileError
from ...core.fields.detail import InputSurface, exact_field
from ...core.fields.field import Field
from ...core.surfaces.extract import extract_levels
from ...core.surfaces.preview import winding_preview
from ...core.surfaces.remesh import combine_surfaces, offset_surfaces, remesh
from ...core.surfaces.simplify import decimate_results
from ...core.training.presets import DEFAULT_PRESET, PREVIEW_RESOLUTION, get_preset
from ...core.training.summary import record_summary, witness_summary
from ...core.training.train import train_field
from .. import params as par
from ..running import Job, on_device, save_meshes, with_fallbacks


def job_train(job: Job):
    """Train a field on the input's mesh, point cloud or curve (``input``, an ``.npz``) and
    write it as a ``.lipsdf``; ``init`` names an old field to warm-start from."""
    p = job.params
    kind = par.choice(p, "kind", "mesh", ("mesh", "points", "curve"))
    mode = par.choice(p, "mode", "signed", ("signed", "unsigned"))
    seed = par.whole(p, "seed", 0, 0, 2**63 - 1)
    thickness = None if p.get("thickness") is None else par.number(p, "thickness", 0.0, lo=0)
    overrides = par.overrides(p.get("overrides") or {})
    normals, noise = par.cloud_params(p)
    init = init_field(job)
    preset = par.text(p, "preset", DEFAULT_PRESET)
    base = get_preset(preset, **overrides)
    device = par.text(p, "device", "auto")
    pick_device(device)
    out = job.output("field", ".lipsdf")
    arrays = job.read_input(p.get("input", "input.npz"), "the training input")
    geom = par.geometry_from(kind, arrays)
    job.progress("label", 0, base.steps, None, None, describe(pick_device(device)))

    def attempt(scale: float, dev: str) -> Field:
        ov = dict(overrides)
        if scale < 1.0:
            ov["batch_size"] = max(16, int(base.batch_size * scale))
        return train_field(
            geom,
            preset,
            mode=mode,
            device=dev,
            seed=seed,
            thickness=thickness,
            progress=lambda q: job.progress(q.phase, q.step, q.total, q.loss, q.eta, q.device),
            cancel=job.cancelled,
            normals=normals,
            noise=noise,
            init=init,
            **ov,
        )

    field = with_fallbacks(job, attempt, device)
    field.save(out)
    job.shared.fields.put(out, field)
    r = field.record
    keys = ("device", "seconds", "seconds_labelling", "seconds_training", "final_loss")
    info = {k: r.get(k) for k in (*keys, "samples", "preset", "cloud")}
    info["summary"] = record_summary(r, noise_given=noise is not None)
    info["warm_start"] = par.warm_info(r.get("warm_start"))
    ws = info["warm_start"]
    if ws is not None and not ws["used"]:
        job.log("info", f"trained from scratch: {ws['reason']}")
    return {"field": str(out.resolve())}, info


def init_field(job: Job) -> Field | None:
    """A train job's ``init``: the old field to warm-start from, or ``None``.

    A missing or malformed path is the caller's mistake (``bad_input``); a file that
    cannot be read as a field only costs the warm start (trained from scratch, logged).
    """
    name = job.params.get("init")
    if name is None:
        return None
    if not isinstance(name, str) or not name.endswith(".lipsdf"):
        raise BadInputError(f"init must name a .lipsdf file, got {name!r}")
    path = job.field_path(name)
    if not path.is_file():
        raise BadInputError(f"the old field (init) {path} does not exist")
    try:
        field, _ = job.shared.fields.get(path)
    except FieldFileError as exc:
        job.log("warning", f"the old field cannot be read ({exc}); no warm start")
        return None
    return field


def job_extract(job: Job):
    """Meshes of a field's level sets (``levels``, default ``[0]``): the zero level is
    remeshed (``detail``, ``sharp``, ``faces``), other levels are extracted and decimated."""
    p = job.params
    levels = par.numbers(p, "levels", [0.0])
    if not levels:
        raise BadInputError("an extract job needs at least one level")
    sp = par.surface_params(p)
    info: dict = {}
    field = job.field(p.get("field"), info)
    res = par.resolution(p, [field])
    if levels == [0.0]:
        results = [on_device(job, "extract", remesh, field, res, **sp)]
        info["detail_share"] = results[0].detail_share
        info["witnesses"] = witness_summary(results[0].detail_share)
    else:
        results = on_device(job, "extract", extract_levels, field, levels, resolution=res)
        decimate_results(results, sp["faces"])
    return save_meshes(job, results, levels, info)


def job_exact_remesh(job: Job):
    """The remesh of a closed mesh (``input``) from its exact distance, before any training:
    the same mesh ``extract`` gives for a field trained on it with ``preset`` and
    ``overrides`` (:func:`~...core.fields.detail.exact_field`)."""
    p = job.params
    sp = par.surface_params(p)
    if not sp["detail"]:
        raise BadInputError("an exact remesh is the input's own surface: it needs detail on")
    overrides = par.overrides(p.get("overrides") or {})
    preset = par.text(p, "preset", DEFAULT_PRESET)
    base = get_preset(preset, **overrides)
    res = par.resolution_of(p, [{"preset": preset, "settings": {"resolution": base.resolution}}])
    pick_device(par.text(p, "device", "auto"))
    arrays = job.read_input(p.get("input", "input.npz"), "the mesh")
    exact = exact_field(par.geometry_from("mesh", arrays))
    if exact is None:
        raise BadInputError(
            "the mesh is not closed (holes, open rims or flipped faces): its remesh needs a "
            "trained field (a train job, then extract)"
        )
    r = on_device(job, "extract", remesh, exact, res, **sp)
    info = {
        "detail_share": r.detail_share,
        "witnesses": witness_summary(r.detail_share),
        "empty": bool(r.is_empty),
    }
    return save_meshes(job, [r], [0.0], info)


def job_winding_preview(job: Job):
    """A coarse preview of a mesh or soup (``input``) before its training: marching cubes of
    its exact distance signed by its winding number on a dense grid of ``resolution`` cells
    (:func:`~...core.surfaces.preview.winding_preview`); ``info.empty`` when nothing is
    inside."""
    p = job.params
    res = par.whole(p, "resolution", PREVIEW_RESOLUTION, 4, 512)
    arrays = job.read_input(p.get("input", "input.npz"), "the mesh")
    geom = par.geometry_from("mesh", arrays)
    r = winding_preview(InputSurface.from_geometry(geom), res, cancel=job.cancelled)
    return save_meshes(job, [r], [0.0], {"empty": bool(r.is_empty)})


def job_offset(job: Job):
    """Meshes of a field's surface moved by each of ``distances`` (object units; ``exact``:
    measured on the remesh rather than the field)."""
    p = job.params
    distances = par.numbers(p, "distances", [])
    if not distances:
        raise BadInputError("an offset job needs at least one distance")
    exact = par.flag(p, "exact", True)
    sp = par.surface_params(p)
    info: dict = {}
    field = job.field(p.get("field"), info)
    res = par.resolution(p, [field])
    # offset_surfaces has no batch size of its own; the core default is used.
    results = on_device(
        job, "offset", offset_surfaces, field, distances, res, exact=exact, batched=False, **sp
    )
    return save_meshes(job, results, distances, info)


def job_csg(job: Job):
    """The mesh of a union, intersection or difference of ``fields`` (each placed by its
    matrix in ``matrices``, smoothed by ``blend``)."""
    p = job.params
    names = par.field_names(p)
    op = par.choice(p, "op", "union", ("union", "intersection", "difference"))
    blend = par.number(p, "blend", 0.0, lo=0)
    matrices = par.matrices(p.get("matrices"), len(names))
    sp = par.surface_params(p)
    info: dict = {}
    fields = [job.field(n, info) for n in names]
    res = par.resolution(p, fields)
    labels = [Path(n).name for n in names]
    result = on_device(
        job, "csg", combine_surfaces, op, fields, blend=blend, matrices=matrices, names=labels,
        resolution=res, **sp,
    )  # fmt: skip
    return save_meshes(job, [result], [0.0], info)
