"""Object File Format: read and write polygons."""

from __future__ import annotations

from ..errors import BadInputError
from ..inputs.geometry import Geometry
from ..types import Faces, Points
from .text import decode_text, fan, number_rows, write_table


def read_off(data: bytes) -> Geometry:
    tokens_by_line = [ln.split("#", 1)[0].split() for ln in decode_text(data).splitlines()]
    tokens_by_line = [t for t in tokens_by_line if t]
    if not tokens_by_line:
        raise BadInputError("the OFF file is empty.")
    first = tokens_by_line[0]
    if not first[0].upper().endswith("OFF"):
        raise BadInputError("not an OFF file (the first line must be 'OFF').")
    if first[0].startswith(("4", "n")):  # 4OFF / nOFF: homogeneous or n-dimensional
        raise BadInputError(f"'{first[0]}' files are not supported; use a 3D OFF file.")
    rest = first[1:]
    rows = tokens_by_line[1:]
    if not rest:
        if not rows:
            raise BadInputError("the OFF file has no vertex/face counts.")
        rest, rows = rows[0], rows[1:]
    try:
        nv, nf = int(rest[0]), int(rest[1])
    except (IndexError, ValueError):
        raise BadInputError("the OFF counts line must be 'n_vertices n_faces n_edges'.") from None
    if len(rows) < nv + nf:
        raise BadInputError(
            f"the OFF file announces {nv} vertices and {nf} faces but has only {len(rows)} "
            "data lines; it is truncated."
        )
    V = number_rows([r[:3] for r in rows[:nv]], 3, "OFF vertex coordinates")
    polys = []
    for r in rows[nv : nv + nf]:
        k = int(r[0])
        if len(r) < k + 1:
            raise BadInputError(f"an OFF face line is too short: '{' '.join(r)}'.")
        polys.append([int(x) for x in r[1 : k + 1]])
    if nf:
        return Geometry("mesh", V, faces=fan(polys))
    return Geometry("points", V)


def write_off(fh, V: Points, F: Faces) -> None:
    fh.write(f"OFF\n{len(V)} {len(F)} 0\n".encode("ascii"))
    if len(V):
        write_table(fh, V, "%.9g %.9g %.9g")
    if len(F):
        write_table(fh, F, "3 %d %d %d")
