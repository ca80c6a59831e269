"""Jobs that make pictures of fields: a slice through a field, a sphere-traced preview.

Each ``job_<type>`` takes the running :class:`~..running.Job` and returns ``(files, info)``
for the ``result`` message; every param is checked (:mod:`..params`) before any work. They run
where the field is (its device); out of memory, the batch is halved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...core.device import describe
from ...core.errors import BadInputError
from ...core.fields.csg import OPERATIONS, combine, placed
from ...core.fields.query import DEFAULT_BATCH, field_device
from ...core.tools.slicing import slice_image
from ...core.tools.trace import render
from .. import params as par
from .. import protocol as P
from ..running import Job, with_fallbacks


def batched(job: Job, fn):
    """``fn(batch_size)``, with the batch halved after running out of memory (the field
    stays where it is: a picture's fall-backs only change the batch)."""
    device = par.text(job.params, "device", "auto")
    return with_fallbacks(job, lambda scale, _dev: fn(int(DEFAULT_BATCH * scale)), device)


def job_slice(job: Job):
    """A picture of a field's distances on a square (``plane``, a 4x4 matrix), with
    contour lines every ``spacing``, and of its gradient's norm."""
    info: dict = {}
    p = job.params
    plane = par.matrix(p, "plane")
    if plane is None:
        raise BadInputError("a slice job needs plane: the 4x4 matrix of the slice's square")
    M = par.matrix(p, "matrix")
    w, h = par.pixels(p, "pixels", [512, 512])
    spacing = par.number(p, "spacing", 0.0, lo=0)
    field = job.field(p.get("field"), info)
    target = placed(field, M)
    progress = job.progress_hook("slice", describe(field_device(field)))
    progress(0, w * h)
    pic = batched(
        job,
        lambda batch: slice_image(
            target, plane, (w, h), spacing, batch_size=batch, progress=progress,
            cancel=job.cancelled,
        ),
    )  # fmt: skip
    path = P.save_arrays(
        job.output("image", ".npz"),
        **{k: pic[k] for k in ("distance", "gradient_norm", "rgba", "rgba_gradient")},
    )
    info.update({k: pic[k] for k in ("min", "max", "gradient_max")})
    return {"image": str(path.resolve())}, info


def job_render(job: Job):
    """A sphere-traced picture of ``fields`` (one, or their CSG ``op``) seen by ``camera``:
    colours and depth."""
    info: dict = {}
    p = job.params
    names = par.field_names(p)
    op = par.choice(p, "op", "union", OPERATIONS)
    blend = par.number(p, "blend", 0.0, lo=0)
    matrices = par.matrices(p.get("matrices"), len(names))
    camera = par.camera(p)
    fields = [job.field(n, info) for n in names]
    if len(fields) == 1:
        target = placed(fields[0], None if matrices is None else matrices[0])
    else:
        labels = [Path(n).name for n in names]
        target = combine(op, fields, blend=blend, matrices=matrices, names=labels)
    progress = job.progress_hook("trace", describe(field_device(target)))
    progress(0, 1)
    out = batched(
        job,
        lambda batch: render(
            target, camera, batch_size=batch, cancel=job.cancelled, progress=progress
        ),
    )
    path = P.save_arrays(
        job.output("image", ".npz"),
        rgba=out["rgba"],
        depth=np.asarray(out["depth"], dtype=np.float64),
    )
    info.update(out["info"])
    return {"image": str(path.resolve())}, info
