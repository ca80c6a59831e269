"""STL (ASCII and binary): read triangles, welding equal corners; write binary triangles."""

from __future__ import annotations

import re

import numpy as np

from ..errors import BadInputError
from ..inputs.geometry import Geometry
from ..types import Faces, Points
from .text import decode_text, number_rows

_STL_RECORD = np.dtype([("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def read_stl(data: bytes) -> Geometry:
    binary = False
    if len(data) >= 84:
        n = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
        # A binary file's size is exact; ascii files start with "solid" but so do some binary
        # ones, so the size decides.
        binary = len(data) == 84 + 50 * n or not data.lstrip().startswith(b"solid")
    if binary:
        n = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
        if len(data) < 84 + 50 * n:
            raise BadInputError(
                f"the binary STL announces {n} triangles but is too short for them; "
                "the file is truncated."
            )
        rec = np.frombuffer(data, dtype=_STL_RECORD, count=n, offset=84)
        corners = rec["v"].reshape(-1, 3).astype(np.float64)
    else:
        text = decode_text(data)
        # [ \t] rather than \s: a \s* after ^ runs across line breaks, so every line start
        # of a run of blank lines rescanned the rest of the run (100k blank lines: ~1 min)
        nums = re.findall(r"^[ \t]*vertex[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)", text, flags=re.M)
        corners = number_rows(nums, 3, "STL vertex coordinates")
        if len(corners) % 3:
            raise BadInputError(
                f"the ascii STL has {len(corners)} 'vertex' lines, not a multiple of 3."
            )
    if len(corners) == 0:
        raise BadInputError("the STL file contains no triangles.")
    # STL stores every triangle corner separately; exact duplicates are the same vertex.
    V, inv = _merge_exact(corners)
    return Geometry("mesh", V, faces=inv.reshape(-1, 3))


def _merge_exact(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique rows of ``X (n, 3)`` in first-seen order, and the index of each row among them.

    Same result as ``np.unique(X, axis=0, return_inverse=True)`` up to the order, several
    times faster (a lexsort on columns instead of a sort of row records).
    """
    order = np.lexsort((X[:, 2], X[:, 1], X[:, 0]))
    Xs = X[order]
    new = np.ones(len(X), dtype=bool)
    new[1:] = np.any(Xs[1:] != Xs[:-1], axis=1)
    group = np.cumsum(new) - 1
    first = order[new]  # a representative original row per group
    # renumber groups by first appearance so the vertex order follows the file
    rank = np.empty(len(first), dtype=np.int64)
    first_seen = np.minimum.reduceat(order, np.flatnonzero(new))
    rank[np.argsort(first_seen, kind="stable")] = np.arange(len(first))
    inv = np.empty(len(X), dtype=np.int64)
    inv[order] = rank[group]
    V = np.empty((len(first), 3), dtype=np.float64)
    V[rank] = X[first]
    return V, inv


def write_stl(fh, V: Points, F: Faces) -> None:
    rec = np.zeros(len(F), dtype=_STL_RECORD)
    tri = V[F]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    ln = np.linalg.norm(n, axis=1, keepdims=True)
    rec["n"] = np.divide(n, ln, out=np.zeros_like(n), where=ln > 0)
    rec["v"] = tri
    header = b"binary STL written by LipSDF".ljust(80, b" ")
    fh.write(header)
    fh.write(np.uint32(len(F)).astype("<u4").tobytes())
    fh.write(rec.tobytes())
