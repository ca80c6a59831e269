"""Jobs on a field's surface: points on it, projection onto it, values, thickness, hollowing.

Each ``job_<type>`` takes the running :class:`~..running.Job` and returns ``(files, info)``
for the ``result`` message; every param is checked (:mod:`..params`) before any work. Jobs
with ``exact`` measure on the field's remesh, kept between jobs (:meth:`~..running.Job.exact`).
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from ...core.errors import BadInputError, CancelledError
from ...core.fields.csg import placed
from ...core.fields.query import (
    evaluate,
    project_safe,
    sample_surface_points,
    spacing,
    value_and_gradient,
)
from ...core.tools.printing import hollow, thickness
from .. import params as par
from .. import protocol as P
from ..running import Job, on_device, save_meshes

#: Points per chunk of a query, between progress messages and cancel checks.
CHUNK = 262_144


def stop_if_cancelled(job: Job) -> None:
    """Raise :class:`CancelledError` when the job was cancelled."""
    if job.cancelled():
        raise CancelledError("the job was cancelled")


def unit(g: np.ndarray) -> np.ndarray:
    """Rows of ``g`` scaled to length 1 (zero rows stay zero)."""
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    return np.divide(g, norm, out=np.zeros_like(g), where=norm > 1e-12)


def job_sample(job: Job):
    """``n`` points on a field's level set ``level`` (placed by ``matrix``), with normals."""
    info: dict = {}
    p = job.params
    n = par.whole(p, "n", 1000, 1, par.MAX_POINTS)
    level = par.number(p, "level", 0.0)
    seed = par.whole(p, "seed", 0, 0, 2**63 - 1)
    resolution = par.whole(p, "resolution", 64, *par.RESOLUTION)
    matrix = par.matrix(p)
    field = placed(job.field(p.get("field"), info), matrix)
    job.progress("sample", 0, 2, None, None, "CPU")
    pts = sample_surface_points(field, n, level=level, seed=seed, resolution=resolution)
    stop_if_cancelled(job)
    job.progress("normals", 1, 2, None, None, "CPU")
    _, g = value_and_gradient(field, pts)
    info["spacing"] = spacing(pts)
    path = P.save_arrays(job.output("points", ".npz"), points=pts, normals=unit(g))
    return {"points": str(path.resolve())}, info


def job_project(job: Job):
    """The input ``points`` moved onto a field's level set ``level``, and which converged."""
    info: dict = {}
    p = job.params
    level = par.number(p, "level", 0.0)
    iterations = par.whole(p, "iterations", 100, 0, par.MAX_ITERATIONS)
    matrix = par.matrix(p)
    pts = job.read_points(p.get("points", "points_in.npz"), "the points to project")
    field = placed(job.field(p.get("field"), info), matrix)
    job.progress("project", 0, 1, None, None, "CPU")
    Q, converged = project_safe(
        field, pts, level=level, iterations=iterations, cancel=job.cancelled
    )
    residual = np.abs(evaluate(field, Q) - level)
    info["not_converged"] = int((~converged).sum())
    info["max_residual"] = float(residual.max()) if len(residual) else 0.0
    path = P.save_arrays(job.output("projected", ".npz"), points=Q, converged=converged)
    return {"points": str(path.resolve())}, info


def job_query(job: Job):
    """Values and gradients of a field (or, with ``exact``, of its remesh's exact signed
    distance) at the input ``points``, in chunks of :data:`CHUNK`."""
    info: dict = {}
    p = job.params
    matrix = par.matrix(p)
    exact = par.flag(p, "exact", False)
    par.remesh_checks(p)
    pts = job.read_points(p.get("points", "points_in.npz"), "the points to query")
    name = p.get("field")
    field = job.field(name, info)
    local = placed(field, matrix)  # checks the matrix
    if exact:
        local = job.exact(name, field, info)
    values = np.empty(len(pts))
    grads = np.empty((len(pts), 3))
    for start in range(0, len(pts), CHUNK):
        stop_if_cancelled(job)
        job.progress("query", start, len(pts), None, None, "CPU")
        X = pts[start : start + CHUNK]
        if exact:
            d, g = exact_placed(local, X, matrix)
        else:
            d, g = value_and_gradient(local, X)
        values[start : start + len(X)] = d
        grads[start : start + len(X)] = g
    path = P.save_arrays(job.output("values", ".npz"), values=values, gradients=grads)
    return {"values": str(path.resolve())}, info


def job_thickness(job: Job):
    """The wall thickness of the solid at the input ``points`` (on its surface); ``gap``:
    walls closer than this count as touching."""
    info: dict = {}
    p = job.params
    exact = par.flag(p, "exact", True)
    gap = par.number(p, "gap", 0.0, lo=0)
    par.remesh_checks(p)
    pts = job.read_points(p.get("points", "points_in.npz"), "the points to measure")
    name = p.get("field")
    field = job.field(name, info)
    t0 = time.monotonic()
    F = job.exact(name, field, info) if exact else None
    job.progress("thickness", 0, 1, None, None, "CPU")

    def report(done: int, total: int) -> None:
        job.progress("thickness", done, total, None, None, "CPU")

    th = thickness(field, pts, exact=F, progress=report, cancel=job.cancelled, gap=gap)
    finite = th[np.isfinite(th)]
    info["min"] = float(finite.min()) if len(finite) else None
    info["median"] = float(np.median(finite)) if len(finite) else None
    info["seconds"] = round(time.monotonic() - t0, 3)
    path = P.save_arrays(job.output("thickness", ".npz"), thickness=th)
    return {"values": str(path.resolve())}, info


def job_hollow(job: Job):
    """The solid made a shell with walls ``wall`` thick (object units): one mesh, its
    inner surface facing the cavity; ``info`` gets the volumes."""
    info: dict = {}
    p = job.params
    if "wall" not in p:
        raise BadInputError("a hollow job needs a wall thickness (wall, object units)")
    wall = par.number(p, "wall", 0.0, lo=0)
    if wall <= 0:
        raise BadInputError(f"wall must be a thickness > 0 in object units, got {wall:g}")
    sp = par.surface_params(p)
    par.remesh_checks(p)
    name = p.get("field")
    field = job.field(name, info)
    res = par.resolution(p, [field])
    exact = job.exact(name, field, info)
    # The exact distance runs in libigl on the CPU: hollow gets no device and no batch size.
    V, F, shell = on_device(
        job, "hollow", hollow, exact, wall, resolution=res, sharp=sp["sharp"],
        faces=sp["faces"], device=None, batched=False,
    )  # fmt: skip
    info.update(shell)
    return save_meshes(job, [SimpleNamespace(vertices=V, faces=F)], [0.0], info)


def exact_placed(exact, X: np.ndarray, matrix) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances and gradients at world points ``X`` of a surface in object units:
    ``d = s d_local(M^-1 x)``, ``g = (A / s) g_local`` for ``M = [A t]``, ``A = s R``."""
    if matrix is None:
        return exact.value_and_gradient(X)
    A, t = matrix[:3, :3], matrix[:3, 3]
    s = float(np.cbrt(abs(np.linalg.det(A))))
    d, g = exact.value_and_gradient((X - t) @ np.linalg.inv(A).T)
    return s * d, g @ (A / s).T
