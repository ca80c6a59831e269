"""The LipSDF operators, one family per module over one job-running base (:mod:`.base`);
each family's plans (what it asks of the worker) are in the module of the same name in
:mod:`..plans`, and :mod:`.selection` says which objects an operator works on.

=============  ==========================================================================
module         operators
=============  ==========================================================================
``build``      train, remesh, offset, csg, cancel
``query``      surface points, project onto a field, distance attributes
``printing``   wall thickness, hollow
``pictures``   slice picture, sphere-traced preview
``exchange``   hand-over to an OpenVDB level set (a Volume object)
=============  ==========================================================================

The run's state (the job, what it made, its error) lives in :mod:`.base`; ``operators.X``
reads it from there, so scripts see the current value.
"""

from __future__ import annotations

from . import base, build, exchange, pictures, printing, query
from .base import SETTINGS_KEYS, busy, current_job, parse_distances, set_job, stop_job

__all__ = ["SETTINGS_KEYS", "busy", "current_job", "parse_distances", "set_job", "stop_job"]

classes = (*build.classes, *query.classes, *printing.classes, *pictures.classes)
classes += exchange.classes


def __getattr__(name: str):
    """``last_error`` and ``last_results``, read from :mod:`.base` (rebound as jobs run)."""
    if name in ("last_error", "last_results"):
        return getattr(base, name)
    raise AttributeError(name)


def register() -> None:
    """Register the operators' handlers (the classes are registered from ``classes``)."""
    base.register()


def unregister() -> None:
    """Undo :func:`register`, stopping a running job."""
    base.unregister()
