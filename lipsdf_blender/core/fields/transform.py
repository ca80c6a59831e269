"""Which object transforms keep distances proportional: numpy only, so Blender can ask too.

A distance field moved by a 4x4 object-to-world matrix stays a (scaled) distance field only
for a similarity: rotation, translation, mirror and one uniform scale. The add-on checks this
in Blender's process before it sends a job; the core's ``csg.Transformed`` checks it again in
the worker. Both call :func:`similarity_scales`, so they accept and refuse the same matrices.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInputError

#: Singular values of a transform's linear part may differ by this much (relative) and still
#: count as a uniform scale; Blender stores object matrices in float32, so exact equality is
#: too strict, but a real non-uniform scale is far larger than this.
UNIFORM_SCALE_RTOL = 1e-6


def similarity_scales(matrix, label: str = "the object") -> np.ndarray:
    """The singular values ``(3,)`` of a similarity transform's linear part (all equal).

    Parameters
    ----------
    matrix : (4, 4) array_like
        Object-to-world transform acting on column vectors, as Blender's ``matrix_world``.
    label : str
        How messages name the object, for example ``"object 'Cube'"``.

    Raises
    ------
    BadInputError
        Not a finite 4x4 matrix, a perspective row, a zero, non-uniform or sheared scale; the
        message says what to apply in Blender.
    """
    M = np.asarray(matrix, dtype=np.float64)
    if M.shape != (4, 4) or not np.all(np.isfinite(M)):
        raise BadInputError(
            f"{label} has an unusable transform: expected a finite 4x4 matrix, got shape {M.shape}"
        )
    if not np.allclose(M[3], (0.0, 0.0, 0.0, 1.0), atol=1e-9):
        raise BadInputError(
            f"{label} has a perspective transform (last row {tuple(M[3])}); only rotation, "
            "translation and uniform scale are supported"
        )
    A = M[:3, :3]
    # Blender's per-axis scale is the length of each column of the linear part; the
    # singular values decide, because a shear can have equal column lengths.
    axis_scale = np.linalg.norm(A, axis=0)
    shown = ", ".join(f"{v:.6g}" for v in axis_scale)
    sigma = np.linalg.svd(A, compute_uv=False)
    if sigma[-1] <= 1e-12 * max(1.0, sigma[0]):
        raise BadInputError(f"{label} has a zero scale ({shown}); give it a non-zero uniform scale")
    if sigma[0] - sigma[-1] > UNIFORM_SCALE_RTOL * sigma[0]:
        if np.ptp(axis_scale) > UNIFORM_SCALE_RTOL * axis_scale.max():
            raise BadInputError(
                f"{label} has a non-uniform scale ({shown}); apply it with "
                "Object › Apply › Scale (Ctrl+A) or make it uniform"
            )
        raise BadInputError(
            f"{label} has a sheared transform (singular values "
            f"{', '.join(f'{v:.6g}' for v in sigma)}), usually from a parent with a "
            "non-uniform scale; apply them with Object › Apply › All Transforms or give "
            "the parents a uniform scale"
        )
    return sigma
