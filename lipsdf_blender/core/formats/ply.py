"""Stanford PLY, ASCII and binary: read vertices, normals, faces, edges; write meshes, points."""

from __future__ import annotations

import re

import numpy as np

from ..errors import BadInputError
from ..inputs.geometry import Geometry
from ..types import Faces
from .text import decode_text, fan, number_table

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


class _PlyElement:
    def __init__(self, name: str, count: int):
        self.name = name
        self.count = count
        # (name, type) for scalars, (name, (count_type, item_type)) for lists
        self.props: list[tuple[str, object]] = []

    @property
    def has_list(self) -> bool:
        return any(isinstance(t, tuple) for _, t in self.props)


def _ply_type(t: str) -> str:
    if t not in _PLY_TYPES:
        raise BadInputError(f"unknown PLY property type '{t}'.")
    return _PLY_TYPES[t]


def read_ply(data: bytes) -> Geometry:
    if not data.startswith(b"ply"):
        raise BadInputError("not a PLY file (it does not start with 'ply').")
    m = re.search(rb"end_header[ \t]*\r?\n", data)
    if m is None:
        raise BadInputError("the PLY header has no 'end_header' line.")
    header = decode_text(data[: m.start()]).splitlines()
    body = data[m.end() :]
    fmt = None
    elements: list[_PlyElement] = []
    for line in header[1:]:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        if tok[0] == "format":
            fmt = tok[1] if len(tok) > 1 else None
        elif tok[0] == "element":
            if len(tok) < 3:
                raise BadInputError(f"bad PLY header line '{line}'.")
            elements.append(_PlyElement(tok[1], int(tok[2])))
        elif tok[0] == "property":
            if not elements:
                raise BadInputError("a PLY property comes before any element.")
            if len(tok) >= 5 and tok[1] == "list":
                elements[-1].props.append((tok[4], (_ply_type(tok[2]), _ply_type(tok[3]))))
            elif len(tok) >= 3:
                elements[-1].props.append((tok[2], _ply_type(tok[1])))
            else:
                raise BadInputError(f"bad PLY header line '{line}'.")
    if fmt == "ascii":
        values = _ply_ascii(body, elements)
    elif fmt in ("binary_little_endian", "binary_big_endian"):
        values = _ply_binary(body, elements, "<" if fmt == "binary_little_endian" else ">")
    else:
        raise BadInputError(f"unsupported PLY format '{fmt}'.")

    vert = values.get("vertex")
    if vert is None:
        raise BadInputError("the PLY file has no 'vertex' element.")
    scalars, _ = vert
    for c in ("x", "y", "z"):
        if c not in scalars:
            raise BadInputError(f"the PLY vertex element has no '{c}' property.")
    V = np.column_stack([scalars["x"], scalars["y"], scalars["z"]]).astype(np.float64)
    if "face" in values:
        _, lists = values["face"]
        key = next((k for k in ("vertex_indices", "vertex_index") if k in lists), None)
        if key is None and lists:
            key = next(iter(lists))
        if key is not None and len(lists[key]):
            return Geometry("mesh", V, faces=_fan_lists(lists[key]))
    if "edge" in values:
        escal, _ = values["edge"]
        if "vertex1" in escal and "vertex2" in escal and len(escal["vertex1"]):
            E = np.column_stack([escal["vertex1"], escal["vertex2"]]).astype(np.int64)
            return Geometry("curve", V, edges=E)
    N = None
    if all(c in scalars for c in ("nx", "ny", "nz")):
        N = np.column_stack([scalars["nx"], scalars["ny"], scalars["nz"]]).astype(np.float64)
    return Geometry("points", V, normals=N)


def _fan_lists(lists) -> Faces:
    """Triangulate a PLY face list given as an (m, k) array or a list of index arrays."""
    if isinstance(lists, np.ndarray) and lists.ndim == 2:
        k = lists.shape[1]
        if k < 3:
            return np.zeros((0, 3), dtype=np.int64)
        fans = [lists[:, [0, i, i + 1]] for i in range(1, k - 1)]
        # interleave so each polygon's triangles stay together
        return np.stack(fans, axis=1).reshape(-1, 3).astype(np.int64)
    return fan([list(map(int, p)) for p in lists])


def _ply_ascii(body: bytes, elements: list[_PlyElement]) -> dict:
    rows = decode_text(body).splitlines()
    pos = 0
    out: dict = {}
    for el in elements:
        chunk = rows[pos : pos + el.count]
        if len(chunk) < el.count:
            raise BadInputError(
                f"the PLY file ends early: element '{el.name}' announces {el.count} lines but "
                f"only {len(chunk)} follow."
            )
        pos += el.count
        if not el.has_list:
            arr = number_table(chunk, len(el.props), f"'{el.name}' values")
            out[el.name] = ({n: arr[:, i] for i, (n, _) in enumerate(el.props)}, {})
            continue
        scal: dict[str, list] = {n: [] for n, t in el.props if not isinstance(t, tuple)}
        lists: dict[str, list] = {n: [] for n, t in el.props if isinstance(t, tuple)}
        for r in chunk:
            tok = r.split()
            j = 0
            for n, t in el.props:
                if isinstance(t, tuple):
                    c = int(tok[j])
                    lists[n].append([int(float(x)) for x in tok[j + 1 : j + 1 + c]])
                    j += 1 + c
                else:
                    scal[n].append(float(tok[j]))
                    j += 1
            if j > len(tok):
                raise BadInputError(f"a '{el.name}' line of the PLY file is too short: '{r}'.")
        out[el.name] = (
            {n: np.asarray(v, dtype=np.float64) for n, v in scal.items()},
            {n: _maybe_rect(v) for n, v in lists.items()},
        )
    return out


def _maybe_rect(lists: list[list[int]]):
    if lists and all(len(p) == len(lists[0]) for p in lists):
        return np.asarray(lists, dtype=np.int64)
    return lists


def _ply_binary(body: bytes, elements: list[_PlyElement], bo: str) -> dict:
    pos = 0
    out: dict = {}
    for el in elements:
        if not el.has_list:
            dt = np.dtype([(n, bo + t) for n, t in el.props])
            need = dt.itemsize * el.count
            if pos + need > len(body):
                raise BadInputError(
                    f"the PLY file is truncated in element '{el.name}' ({el.count} announced)."
                )
            arr = np.frombuffer(body, dtype=dt, count=el.count, offset=pos)
            pos += need
            # fields stay views into the file's bytes: only those used are converted (a
            # scanner's colours and quality never are; 1M points: 213 -> 118 MiB peak)
            out[el.name] = ({n: arr[n] for n, _ in el.props}, {})
            continue
        parsed = _ply_binary_lists_fast(body, pos, el, bo)
        if parsed is None:
            parsed = _ply_binary_lists_slow(body, pos, el, bo)
        out[el.name], pos = parsed[:2], parsed[2]
    return out


def _ply_binary_lists_fast(body: bytes, pos: int, el: _PlyElement, bo: str):
    """Parse an element with list properties assuming every list has the first row's length.

    Almost every file writes pure triangle (or pure quad) meshes; this reads them in one
    ``frombuffer``. Returns ``None`` when the assumption does not hold.
    """
    fields = []
    off = pos
    for n, t in el.props:
        if isinstance(t, tuple):
            ct = np.dtype(bo + t[0])
            if off + ct.itemsize > len(body) or el.count == 0:
                return None
            c = int(np.frombuffer(body, dtype=ct, count=1, offset=off)[0])
            fields += [(f"_c_{n}", bo + t[0]), (n, bo + t[1], (c,))]
            off += ct.itemsize + np.dtype(bo + t[1]).itemsize * c
        else:
            fields.append((n, bo + t))
            off += np.dtype(bo + t).itemsize
    dt = np.dtype(fields)
    if pos + dt.itemsize * el.count > len(body):
        return None
    arr = np.frombuffer(body, dtype=dt, count=el.count, offset=pos)
    scal, lists = {}, {}
    for n, t in el.props:
        if isinstance(t, tuple):
            if not np.all(arr[f"_c_{n}"] == dt[n].shape[0]):
                return None
            lists[n] = arr[n].astype(np.int64).reshape(el.count, -1)
        else:
            scal[n] = arr[n]
    return scal, lists, pos + dt.itemsize * el.count


def _ply_binary_lists_slow(body: bytes, pos: int, el: _PlyElement, bo: str):
    scal: dict[str, list] = {n: [] for n, t in el.props if not isinstance(t, tuple)}
    lists: dict[str, list] = {n: [] for n, t in el.props if isinstance(t, tuple)}
    try:
        for _ in range(el.count):
            for n, t in el.props:
                if isinstance(t, tuple):
                    ct, it = np.dtype(bo + t[0]), np.dtype(bo + t[1])
                    c = int(np.frombuffer(body, dtype=ct, count=1, offset=pos)[0])
                    pos += ct.itemsize
                    lists[n].append(np.frombuffer(body, dtype=it, count=c, offset=pos).tolist())
                    pos += it.itemsize * c
                else:
                    dt = np.dtype(bo + t)
                    scal[n].append(float(np.frombuffer(body, dtype=dt, count=1, offset=pos)[0]))
                    pos += dt.itemsize
    except ValueError as exc:
        raise BadInputError(f"the PLY file is truncated in element '{el.name}'.") from exc
    return (
        {n: np.asarray(v, dtype=np.float64) for n, v in scal.items()},
        {n: _maybe_rect(v) for n, v in lists.items()},
        pos,
    )


def write_ply(fh, V: np.ndarray, F: Faces | None, names=("x", "y", "z")) -> None:
    n_faces = 0 if F is None else len(F)
    head = ["ply", "format binary_little_endian 1.0", "comment written by LipSDF"]
    head.append(f"element vertex {len(V)}")
    head += [f"property float {n}" for n in names]
    if F is not None:
        head += [f"element face {n_faces}", "property list uchar int vertex_indices"]
    head.append("end_header")
    fh.write(("\n".join(head) + "\n").encode("ascii"))
    fh.write(np.ascontiguousarray(V, dtype="<f4").tobytes())
    if n_faces:
        rec = np.empty(n_faces, dtype=[("n", "u1"), ("idx", "<i4", (3,))])
        rec["n"] = 3
        rec["idx"] = F
        fh.write(rec.tobytes())
