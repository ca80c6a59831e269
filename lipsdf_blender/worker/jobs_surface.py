"""Jobs on a field's surface: points on it, projection onto it, values, thickness, hollowing.

A mixin of :class:`.server.Server`: each ``job_<type>`` takes the running job and returns
``(files, info)``; it uses the server's ``progress``, ``_field`` (the field cache) and
``_exact`` (the exact signed distance to a field's remesh, cached).
"""

from __future__ import annotations

import numpy as np

from ..core.errors import BadInputError
from ..core.query import project, sample_surface_points
from . import params as par
from . import protocol as P


class SurfaceJobs:
    def job_sample(self, job):
        info: dict = {}
        p = job.params
        n = par.whole(p, "n", 1000, 1, par.MAX_POINTS)
        level = par.number(p, "level", 0.0)
        seed = par.whole(p, "seed", 0, 0, 2**63 - 1)
        resolution = par.whole(p, "resolution", 64, *par.RESOLUTION)
        field = self._field(job, p.get("field"), info)
        self.progress(job, "sample", 0, 1, None, None, "CPU")
        P_ = sample_surface_points(field, n, level=level, seed=seed, resolution=resolution)
        path = P.save_arrays(job.output("points", ".npz"), points=P_)
        return {"points": str(path.resolve())}, info

    def job_project(self, job):
        info: dict = {}
        p = job.params
        level = par.number(p, "level", 0.0)
        iterations = par.whole(p, "iterations", 10, 0, par.MAX_ITERATIONS)
        field = self._field(job, p.get("field"), info)
        arrays = par.load_input(job, p.get("points", "points_in.npz"), "the points to project")
        if "points" not in arrays:
            raise BadInputError("the points file has no array named 'points'")
        pts = arrays["points"]
        if (
            pts.ndim != 2
            or pts.shape[1:] != (3,)
            or pts.dtype.kind not in "iuf"
            or not np.isfinite(pts).all()
        ):
            raise BadInputError("the points must be an (n, 3) array of finite numbers")
        self.progress(job, "project", 0, 1, None, None, "CPU")
        Q = project(field, pts.astype(np.float64), level=level, iterations=iterations)
        path = P.save_arrays(job.output("projected", ".npz"), points=Q)
        return {"points": str(path.resolve())}, info
