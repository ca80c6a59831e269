"""Plain point lists (``.xyz``, ``.pts``, ``.txt``): x y z per line, optional normals."""

from __future__ import annotations

import io
import re
import warnings

import numpy as np

from ..errors import BadInputError
from ..inputs.geometry import Geometry
from .text import decode_text, one_line


def read_xyz(data: bytes) -> Geometry:
    text = decode_text(data)
    if "," in text:
        text = text.replace(",", " ")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            # numpy's C reader: 3x faster than splitting lines in Python, and it refuses
            # ragged rows instead of guessing
            arr = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, comments="#")
    except ValueError as exc:
        m = re.search(r"columns changed from (\d+) to (\d+) at row (\d+)", str(exc))
        if m:
            raise BadInputError(
                f"the lines of the point file have different numbers of columns ({m[1]}, then "
                f"{m[2]} at point {m[3]}); every line must be 'x y z' or 'x y z nx ny nz'."
            ) from None
        raise BadInputError(f"some point coordinates are not numbers ({one_line(exc)}).") from None
    if arr.size == 0:
        raise BadInputError("the point file has no points.")
    w = arr.shape[1]
    if w not in (3, 6):
        raise BadInputError(
            f"each line must be 'x y z' or 'x y z nx ny nz', but lines have {w} columns."
        )
    return Geometry("points", arr[:, :3].copy(), normals=arr[:, 3:].copy() if w == 6 else None)
