"""The hand-over to voxel grids: a field's narrow band on a grid (for OpenVDB level sets).

``job_grid`` takes the running :class:`~..running.Job` and returns ``(files, info)`` for the
``result`` message; every param is checked (:mod:`..params`) before any work. The worker
writes arrays only; the add-on writes the ``.vdb`` with the ``openvdb`` module of Blender's
own Python (:mod:`lipsdf_blender.blender.vdb`).
"""

from __future__ import annotations

import time

import numpy as np

from ...core.errors import BadInputError
from ...core.tools.grid import band_index_range, narrow_band
from .. import params as par
from .. import protocol as P
from ..running import Job, on_device

#: Accepted half-widths of the band, in voxels (OpenVDB's level sets use 3).
BAND = (1.0, 64.0)


def job_grid(job: Job):
    """A field's signed distances on the voxels within ``band`` voxels of its surface
    (``voxel``: the voxel size in object units; ``exact``: measured on the remesh)."""
    t0 = time.monotonic()
    info: dict = {}
    p = job.params
    if p.get("voxel") is None:
        raise BadInputError("a grid job needs voxel, the voxel size in object units")
    voxel = par.number(p, "voxel", 0.0, lo=0)
    if voxel <= 0:
        raise BadInputError(f"voxel must be a size > 0 in object units, got {voxel:g}")
    band = par.number(p, "band", 3.0)
    if not BAND[0] <= band <= BAND[1]:
        raise BadInputError(
            f"band must be from {BAND[0]:g} to {BAND[1]:g} voxels, got {par.short(band)}"
        )
    exact = par.flag(p, "exact", True)
    par.remesh_checks(p)
    field = job.field(p.get("field"), info)
    # A too-fine voxel is refused before the remesh (the remesh's bounds are the field's
    # up to a cell; the core checks them again).
    band_index_range(field.bounds(), voxel, band)
    source = job.exact(p.get("field"), field, info) if exact else field
    # The exact distance runs in libigl on the CPU whatever the device.
    cpu = {"device": "cpu"} if exact else {}
    ijk, values = on_device(job, "grid", narrow_band, source, voxel, band, **cpu)
    lo, hi = band_index_range(source.bounds(), voxel, band)
    path = P.save_arrays(
        job.output("grid", ".npz"),
        ijk=ijk,
        values=values,
        voxel=np.asarray(voxel, dtype=np.float64),
        band=np.asarray(band, dtype=np.float64),
    )
    info["voxels"] = int(len(ijk))
    info["dims"] = [int(d) for d in hi - lo + 1]
    info["seconds"] = round(time.monotonic() - t0, 3)
    return {"grid": str(path.resolve())}, info
