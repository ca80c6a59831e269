"""The job families the worker runs, and :data:`HANDLERS`, the table from a request's
``type`` to its handler.

A handler takes the running :class:`~..running.Job` and returns ``(files, info)`` for the
``result`` message; it checks every param before any work and raises the core's errors
(:mod:`..server` sends them as ``error`` messages). ``build``: train, extract, exact_remesh,
winding_preview, offset, csg; ``surface``: sample, project, query, thickness, hollow;
``picture``: slice, render; ``grid``: grid. They import the core, :mod:`..params`,
:mod:`..protocol` and :mod:`..running`; never the server.
"""

from __future__ import annotations

from collections.abc import Callable

from .. import protocol as P
from ..running import Job
from .build import (
    job_csg,
    job_exact_remesh,
    job_extract,
    job_offset,
    job_train,
    job_winding_preview,
)
from .grid import job_grid
from .picture import job_render, job_slice
from .surface import job_hollow, job_project, job_query, job_sample, job_thickness

#: The handler of each job type (:data:`~..protocol.JOB_TYPES`).
HANDLERS: dict[str, Callable[[Job], tuple[dict, dict]]] = {
    P.TRAIN: job_train,
    P.EXTRACT: job_extract,
    P.OFFSET: job_offset,
    P.CSG: job_csg,
    P.SAMPLE: job_sample,
    P.PROJECT: job_project,
    P.QUERY: job_query,
    P.THICKNESS: job_thickness,
    P.HOLLOW: job_hollow,
    P.SLICE: job_slice,
    P.RENDER: job_render,
    P.GRID: job_grid,
    P.EXACT_REMESH: job_exact_remesh,
    P.WINDING_PREVIEW: job_winding_preview,
}
assert tuple(HANDLERS) == P.JOB_TYPES, "every job type has one handler"
