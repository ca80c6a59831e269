"""Jobs that make pictures of fields: a slice through a field, a sphere-traced preview.

A mixin of :class:`.server.Server` (see :mod:`.jobs_surface`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.device import describe
from ..core.errors import BadInputError
from ..core.fields.csg import OPERATIONS, combine, placed
from ..core.fields.query import DEFAULT_BATCH, field_device
from ..core.tools.slicing import slice_image
from ..core.tools.trace import render
from . import params as par
from . import protocol as P


class PictureJobs:
    def _batched(self, job, fn):
        """``fn(batch_size)``, with the batch halved after running out of memory."""
        device = par.text(job.params, "device", "auto")
        return self.with_fallbacks(job, lambda scale, dev: fn(int(DEFAULT_BATCH * scale)), device)

    def job_slice(self, job):
        info: dict = {}
        p = job.params
        plane = par.matrix(p, "plane")
        if plane is None:
            raise BadInputError("a slice job needs plane: the 4x4 matrix of the slice's square")
        M = par.matrix(p, "matrix")
        w, h = par.pixels(p, "pixels", [512, 512])
        spacing = par.number(p, "spacing", 0.0, lo=0)
        field = self._field(job, p.get("field"), info)
        target = placed(field, M)
        progress = self._extract_progress(job, "slice", describe(field_device(field)))
        progress(0, w * h)
        pic = self._batched(
            job,
            lambda batch: slice_image(
                target,
                plane,
                (w, h),
                spacing,
                batch_size=batch,
                progress=progress,
                cancel=job.cancelled,
            ),
        )
        path = P.save_arrays(
            job.output("image", ".npz"),
            **{k: pic[k] for k in ("distance", "gradient_norm", "rgba", "rgba_gradient")},
        )
        info.update({k: pic[k] for k in ("min", "max", "gradient_max")})
        return {"image": str(path.resolve())}, info

    def job_render(self, job):
        info: dict = {}
        p = job.params
        names = par.field_names(p)
        op = par.choice(p, "op", "union", OPERATIONS)
        blend = par.number(p, "blend", 0.0, lo=0)
        matrices = par.matrices(p.get("matrices"), len(names))
        camera = par.camera(p)
        fields = [self._field(job, n, info) for n in names]
        if len(fields) == 1:
            target = placed(fields[0], None if matrices is None else matrices[0])
        else:
            labels = [Path(n).name for n in names]
            target = combine(op, fields, blend=blend, matrices=matrices, names=labels)
        progress = self._extract_progress(job, "trace", describe(field_device(target)))
        progress(0, 1)
        out = self._batched(
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
