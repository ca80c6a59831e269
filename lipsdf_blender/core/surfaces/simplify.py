"""Fewer triangles where they are not needed: quadric decimation to a target face count.

Marching cubes spends triangles evenly, a few per grid cell, flat faces included. A target
face count lets an artist get a mesh that is light where the surface is flat and dense where
it bends: :func:`decimate` collapses edges by the quadric error (Garland & Heckbert) with the
maintained ``fast-simplification`` package, and keeps the result only when it is still
closed, so a remesh never comes back with holes.
"""

from __future__ import annotations

import logging

import numpy as np

from ..errors import BadInputError
from ..types import Faces, Points
from .topology import is_watertight

log = logging.getLogger(__name__)


def decimate_results(results, faces: int):
    """:func:`decimate` each :class:`~.extract.ExtractResult` in place; returns them."""
    for r in results:
        if len(r.faces):
            r.vertices, r.faces = decimate(r.vertices, r.faces, faces)
    return results


def decimate(V: Points, F: Faces, faces: int) -> tuple[Points, Faces]:
    """Simplify a closed mesh to about ``faces`` triangles.

    Parameters
    ----------
    V : (n, 3) float
    F : (m, 3) int
    faces : int
        Target face count; ``0`` (or at least ``m``) returns the mesh unchanged.

    Returns
    -------
    V : (n', 3) float64
    F : (m', 3) int64
        ``m'`` within a few faces of ``faces``. If decimation would open the mesh, the
        input is returned unchanged (and a warning logged).

    Raises
    ------
    BadInputError
        A negative or too small target, or ``fast-simplification`` is not installed.
    """
    faces = int(faces)
    if faces < 0:
        raise BadInputError(f"the target face count must be 0 (no limit) or more, got {faces}")
    if faces == 0 or faces >= len(F):
        return V, F
    if faces < 8:
        raise BadInputError(f"a closed surface needs at least 8 faces; got a target of {faces}")
    try:
        import fast_simplification
    except ImportError:
        raise BadInputError(
            "a target face count needs the fast-simplification package in the worker's "
            "Python: pip install fast-simplification==0.2.0 (or press Set Up Worker again)"
        ) from None
    V2, F2 = fast_simplification.simplify(
        np.ascontiguousarray(V, dtype=np.float32),
        np.ascontiguousarray(F, dtype=np.int32),
        target_count=faces,
    )
    F2 = np.asarray(F2, dtype=np.int64)
    if len(F2) == 0 or not is_watertight(F2):
        log.warning("Decimation to %d faces would open the surface; kept %d faces.", faces, len(F))
        return V, F
    return np.asarray(V2, dtype=np.float64), F2
