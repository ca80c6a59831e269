"""Array shape aliases used in signatures and docstrings."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

#: ``(n, 3)`` float64 vertex positions or points.
Points = npt.NDArray[np.float64]
#: ``(m, 3)`` int64 triangle indices into a vertex array.
Faces = npt.NDArray[np.int64]
#: ``(k, 2)`` int64 edge indices into a vertex array.
Edges = npt.NDArray[np.int64]
#: ``(n,)`` float64 scalar per point.
Scalars = npt.NDArray[np.float64]
