"""Read geometry files into a :class:`~..inputs.geometry.Geometry`, write meshes out.

Formats, chosen by extension (case-insensitive):

=================  ==================================================================
``.obj``           faces -> mesh (polygons fan-triangulated); ``l`` lines only -> curve;
                   ``v`` lines only -> points, with ``vn`` normals when there is one per vertex
``.ply``           ascii, binary_little_endian and binary_big_endian; faces -> mesh; ``edge``
                   elements only -> curve; vertices only -> points (``nx ny nz`` -> normals)
``.stl``           ascii and binary; duplicate corners are merged into shared vertices
``.off``           OFF / COFF / NOFF; no faces -> points
``.xyz``           one point per line: ``x y z`` or ``x y z nx ny nz`` (``.pts`` / ``.txt`` too)
``.gltf`` ``.glb``  every mesh of the scene, each with its node's transform, as one mesh
``.3mf``           (or, without triangles, the scene's points); coordinates as stored
=================  ==================================================================

glTF/GLB and 3MF are read by trimesh (pinned in requirements.txt; 3MF also needs lxml and
networkx), imported only when such a file is read, so the worker and the add-on never load
it. The other formats stay our own numpy code: trimesh 5.2.0 (and meshio 5.3.5) were
measured on them (``benchmarks/bench_readers.py``) and each loses something a user would
notice on a common file:

- OBJ: trimesh splits vertices at every texture or normal seam (a flat-shaded or UV-mapped
  export comes back as a soup), drops ``l`` lines and unreferenced vertices, resolves negative
  indices from the end of the file and regroups faces by material. Ours reads the usual file in
  whole-file numpy passes, faster than trimesh, and names the line of a bad index.
- PLY: trimesh refuses binary files whose polygons are not all of one size (Blender's quad
  and triangle exports) or that have trailing bytes, and silently reads an ASCII file that
  ends early as a smaller cloud.
- STL: trimesh reads a truncated binary file as an empty scene; ours is already one
  ``frombuffer`` and our exact merge keeps the file's vertex order.
- XYZ: trimesh keeps colours, not normals.
- meshio groups faces by polygon size (the file's face order is lost), reads no XYZ, and was
  slower than trimesh on every case but the binary scan.

Every failure becomes a :class:`BadInputError` that names the file and says what was wrong.

Example
-------
>>> g = load_geometry("bunny.obj")            # doctest: +SKIP
>>> save_mesh("out.ply", g.vertices, g.faces)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from itertools import chain

import numpy as np

from ..errors import BadInputError
from ..inputs.geometry import Geometry
from ..types import Faces, Points

READ_EXTENSIONS: tuple[str, ...] = (
    ".obj",
    ".ply",
    ".stl",
    ".off",
    ".xyz",
    ".pts",
    ".txt",
    ".gltf",
    ".glb",
    ".3mf",
)
WRITE_EXTENSIONS: tuple[str, ...] = (".obj", ".ply", ".stl", ".off")
#: Read through trimesh (imported lazily, on the first such file).
SCENE_EXTENSIONS: tuple[str, ...] = (".gltf", ".glb", ".3mf")


# -- public API -------------------------------------------------------------------------------


def load_geometry(path: str | os.PathLike) -> Geometry:
    """Read a mesh, point cloud or curve file and return a validated :class:`Geometry`.

    Parameters
    ----------
    path : str or path-like
        File with one of the extensions in :data:`READ_EXTENSIONS`. Coordinates are kept in
        the file's own units.

    Returns
    -------
    Geometry
        ``kind`` is ``"mesh"`` if the file has faces, ``"curve"`` if it has only edges or
        polylines, and ``"points"`` otherwise.

    Raises
    ------
    BadInputError
        Unknown extension, missing or unreadable file, malformed content, no vertices, or
        geometry that :meth:`Geometry.validate` refuses (NaN, indices out of range, ...).
    """
    path = os.fspath(path)
    name = os.path.basename(path) or path
    ext = os.path.splitext(path)[1].lower()
    readers = {
        ".obj": _read_obj,
        ".ply": _read_ply,
        ".stl": _read_stl,
        ".off": _read_off,
        ".xyz": _read_xyz,
        ".pts": _read_xyz,
        ".txt": _read_xyz,
    }
    if ext not in readers and ext not in SCENE_EXTENSIONS:
        raise BadInputError(
            f"Cannot read '{name}': unknown file type '{ext or '(none)'}'. "
            f"Supported: {', '.join(READ_EXTENSIONS)}."
        )
    if not os.path.exists(path):
        raise BadInputError(f"Cannot read '{path}': the file does not exist.")
    if os.path.isdir(path):
        raise BadInputError(f"Cannot read '{path}': it is a folder, not a file.")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise BadInputError(f"Cannot read '{path}': {exc.strerror or exc}.") from exc
    if not data.strip():
        raise BadInputError(f"Cannot read '{name}': the file is empty.")
    try:
        geom = _read_scene(path, ext) if ext in SCENE_EXTENSIONS else readers[ext](data)
    except BadInputError as exc:
        raise BadInputError(f"Cannot read '{name}': {exc}") from exc
    except (ValueError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise BadInputError(
            f"Cannot read '{name}': the {ext[1:].upper()} data is malformed ({_one_line(exc)})."
        ) from exc
    if geom.n_vertices == 0:
        raise BadInputError(f"Cannot read '{name}': the file contains no vertices.")
    try:
        return geom.validate()
    except BadInputError as exc:
        raise BadInputError(f"'{name}': {exc}") from exc


def save_mesh(path: str | os.PathLike, V, F) -> None:
    """Write a triangle mesh atomically; the format follows the extension.

    Parameters
    ----------
    path : str or path-like
        ``.obj`` (text, ``%.9g``), ``.ply`` (binary little-endian, float32 vertices),
        ``.stl`` (binary, float32) or ``.off`` (text).
    V : (n, 3) float
        Vertex positions in object units.
    F : (m, 3) int
        Triangle indices into ``V`` (0-based).

    Raises
    ------
    BadInputError
        Unknown extension, wrong array shapes, or the file cannot be written.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    writers = {".obj": _write_obj, ".ply": _write_ply, ".stl": _write_stl, ".off": _write_off}
    if ext not in writers:
        raise BadInputError(
            f"Cannot save '{os.path.basename(path)}': unknown mesh file type "
            f"'{ext or '(none)'}'. Use one of {', '.join(WRITE_EXTENSIONS)}."
        )
    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3) if np.size(F) == 0 else np.asarray(F)
    if V.ndim != 2 or V.shape[1] != 3 or F.ndim != 2 or F.shape[1] != 3:
        raise BadInputError(
            f"save_mesh needs V of shape (n, 3) and F of shape (m, 3); got {V.shape} and {F.shape}."
        )
    F = F.astype(np.int64)
    if F.size and (F.min() < 0 or F.max() >= len(V)):
        raise BadInputError("save_mesh: face indices out of range of the vertex array.")
    # Written beside and renamed into place: a reader (or a resumed batch) never sees half a
    # file, and a failed write leaves any earlier file as it was.
    tmp = path + ".part"
    try:
        with open(tmp, "wb") as fh:
            writers[ext](fh, V, F)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise BadInputError(f"Cannot write '{path}': {exc.strerror or exc}.") from exc


def save_obj_objects(path: str | os.PathLike, objects) -> None:
    """Write several meshes into one OBJ file, one ``o NAME`` object each.

    Parameters
    ----------
    path : str or path-like
        An ``.obj`` file.
    objects : sequence of (name, V (n, 3) float, F (m, 3) int)
        Object units; each mesh's faces index its own vertices.
    """
    path = os.fspath(path)
    try:
        with open(path, "wb") as fh:
            fh.write(b"# written by LipSDF\n")
            offset = 0
            for name, V, F in objects:
                V = np.asarray(V, dtype=np.float64).reshape(-1, 3)
                F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
                fh.write(f"o {name}\n".encode())
                if len(V):
                    np.savetxt(fh, V, fmt="v %.9g %.9g %.9g")
                if len(F):
                    np.savetxt(fh, F + 1 + offset, fmt="f %d %d %d")
                offset += len(V)
    except OSError as exc:
        raise BadInputError(f"Cannot write '{path}': {exc.strerror or exc}.") from exc


def save_points(path: str | os.PathLike, P, N=None) -> None:
    """Write a point cloud as ``.xyz`` (text) or ``.ply`` (binary), with optional normals.

    Parameters
    ----------
    path : str or path-like
    P : (n, 3) float
        Points in object units.
    N : (n, 3) float, optional
        One normal per point.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    P = np.asarray(P, dtype=np.float64).reshape(-1, 3)
    cols = P if N is None else np.hstack([P, np.asarray(N, dtype=np.float64).reshape(-1, 3)])
    try:
        with open(path, "wb") as fh:
            if ext in (".xyz", ".pts", ".txt"):
                np.savetxt(fh, cols, fmt="%.9g")
            elif ext == ".ply":
                names = ["x", "y", "z"] + ([] if N is None else ["nx", "ny", "nz"])
                _write_ply(fh, cols, None, names)
            else:
                raise BadInputError(f"Cannot save points as '{ext or '(none)'}'; use .xyz or .ply.")
    except OSError as exc:
        raise BadInputError(f"Cannot write '{path}': {exc.strerror or exc}.") from exc


# -- shared helpers ---------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _fan_flat(idx: np.ndarray, sizes: np.ndarray) -> Faces:
    """Fan-triangulate polygons given as flat indices and sizes; drops those with < 3 corners.

    ``idx (sum(sizes),)`` holds the corners of each polygon in turn; polygon ``p`` becomes
    ``(c0, c1, c2), (c0, c2, c3), ...``, its triangles in order.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    if len(sizes) and len(idx) == 3 * len(sizes) and (sizes == 3).all():
        return np.asarray(idx, dtype=np.int64).reshape(-1, 3)  # triangles already
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_tri = np.maximum(sizes - 2, 0)
    first = np.repeat(start, n_tri)
    # position of each triangle within its polygon: 0, 1, ..., n_tri - 1
    k = np.arange(n_tri.sum()) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    tri = np.stack([first, first + k + 1, first + k + 2], axis=1)
    return np.asarray(idx, dtype=np.int64)[tri].reshape(-1, 3)


def _fan(polys: list[list[int]]) -> Faces:
    """Fan-triangulate polygons given as lists of vertex indices."""
    sizes = np.fromiter(map(len, polys), dtype=np.int64, count=len(polys))
    return _fan_flat(np.fromiter(chain.from_iterable(polys), dtype=np.int64), sizes)


def _polylines_flat(idx: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Edges ``(k, 2)`` joining consecutive vertices of each polyline."""
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    last = np.cumsum(sizes) - 1  # no edge from a polyline's last vertex to the next one's first
    keep = np.ones(len(idx) - 1, dtype=bool)
    keep[last[last < len(idx) - 1]] = False
    return np.stack([idx[:-1][keep], idx[1:][keep]], axis=1)


def _table(lines: list[str], width: int, what: str) -> Points:
    """``len(lines)`` rows of ``width`` numbers each, by numpy's C text reader.

    Three times faster than splitting the lines in Python (1M scanner points: 23 s -> 7 s).
    """
    if not lines:
        return np.zeros((0, width))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
            arr = np.loadtxt(
                io.StringIO("\n".join(lines)), dtype=np.float64, ndmin=2, comments=None
            )
    except ValueError as exc:
        raise BadInputError(
            f"some {what} are not numbers, or lines differ in length ({_one_line(exc)})."
        ) from exc
    if arr.shape[0] != len(lines):
        raise BadInputError(f"blank lines among the {what}.")
    if arr.shape[1] != width:
        raise BadInputError(
            f"the lines of {what} have {arr.shape[1]} numbers; the header announces {width}."
        )
    return arr


def _floats(rows: list[list[str]], width: int, what: str) -> Points:
    try:
        return np.array(rows, dtype=np.float64).reshape(-1, width)
    except ValueError as exc:
        raise BadInputError(f"some {what} are not numbers ({exc}).") from exc


# -- OBJ --------------------------------------------------------------------------------------


def _read_obj(data: bytes) -> Geometry:
    # Whole-file numpy passes read the usual file (1M faces, busy 2-core machine: 8.5 -> 1.7 s,
    # peak 849 -> 304 MiB; trimesh 3.7 s, 276 MiB); anything they do not take, an error above
    # all, goes to the line-by-line reader, which names the line. Both give the same records.
    parsed = _obj_bulk(data)
    if parsed is None:
        parsed = _obj_by_line(data)
    V, N, faces, lines = parsed
    if faces is not None:
        idx, sizes = _obj_resolve(*faces, len(V))
        return Geometry("mesh", V, faces=_fan_flat(idx, sizes))
    if lines is not None:
        idx, sizes = _obj_resolve(*lines, len(V))
        return Geometry("curve", V, edges=_polylines_flat(idx, sizes))
    return Geometry("points", V, normals=N)


# An OBJ ``f`` / ``l`` record set: raw indices as written (1-based or negative), flattened;
# corners per record; vertices read before each record; each record's line number.
_ObjRecords = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _obj_resolve(idx, sizes, nv, linenos, n: int) -> tuple[np.ndarray, np.ndarray]:
    """0-based indices of OBJ records (see ``_ObjRecords``) into ``n`` vertices, and sizes."""

    def line_of(k: int) -> int:
        return int(linenos[np.searchsorted(np.cumsum(sizes), k, side="right")])

    zero = np.flatnonzero(idx == 0)
    if len(zero):
        raise BadInputError(f"line {line_of(zero[0])}: vertex index 0 (OBJ indices start at 1).")
    # negative indices count back from the vertices read so far (in place: 3M indices)
    out = np.repeat(np.asarray(nv, dtype=np.int64), sizes)
    out += idx
    np.subtract(idx, 1, out=out, where=idx > 0)
    bad = np.flatnonzero((out < 0) | (out >= n))
    if len(bad):
        k = int(bad[0])
        if idx[k] > 0:
            raise BadInputError(
                f"line {line_of(k)}: vertex index {idx[k]} is past the last vertex; the file has "
                f"only {n} vertices."
            )
        raise BadInputError(
            f"line {line_of(k)}: vertex index {idx[k]} counts back past the first vertex; only "
            f"{out[k] - idx[k]} vertices come before that line."
        )
    return out, sizes


def _obj_by_line(data: bytes):
    """Line-by-line OBJ reader: ``(V, normals or None, faces, lines)``, records or ``None``.

    Takes every form ``_obj_bulk`` does and more (whatever Python's ``float`` and ``str.split``
    accept), and raises the error of the first bad line, with its number.
    """
    text = _text(data).replace("\\\r\n", " ").replace("\\\n", " ")
    verts: list[list[str]] = []
    normals: list[list[str]] = []
    # face and polyline tokens, kept raw and converted in bulk (10x faster on big files)
    elems: dict[str, tuple[list, list, list]] = {"f": ([], [], []), "l": ([], [], [])}

    for lineno, line in enumerate(text.splitlines(), 1):
        if "#" in line:
            line = line.split("#", 1)[0]
        tok = line.split()
        if not tok:
            continue
        key = tok[0]
        if key == "v":
            if len(tok) < 4:
                raise BadInputError(f"line {lineno}: a 'v' line needs x, y and z.")
            verts.append(tok[1:4])
        elif key == "vn":
            if len(tok) < 4:
                raise BadInputError(f"line {lineno}: a 'vn' line needs three components.")
            normals.append(tok[1:4])
        elif key in elems:
            toks, nv, linenos = elems[key]
            toks.append(tok[1:])
            nv.append(len(verts))
            linenos.append(lineno)
    V = _floats(verts, 3, "vertex coordinates")
    if elems["f"][0]:
        return V, None, _obj_parse_records(*elems["f"]), None
    if elems["l"][0]:
        return V, None, None, _obj_parse_records(*elems["l"])
    N = _floats(normals, 3, "normals") if len(normals) == len(verts) and normals else None
    return V, N, None, None


def _obj_parse_records(toks: list[list[str]], nv: list[int], linenos: list[int]) -> _ObjRecords:
    """The raw vertex indices of ``f`` / ``l`` records given as token lists."""
    sizes = np.fromiter(map(len, toks), dtype=np.int64, count=len(toks))
    joined = " ".join(chain.from_iterable(toks))
    if "/" in joined:  # v/vt/vn: keep the vertex part
        joined = re.sub(r"/\S*", "", joined)
    try:
        idx = np.array(joined.split(), dtype=np.int64)
    except ValueError:
        for t, ln in zip(toks, linenos, strict=True):
            for x in t:
                try:
                    int(x.split("/", 1)[0])
                except ValueError:
                    raise BadInputError(f"line {ln}: '{x}' is not a vertex index.") from None
        raise
    if len(idx) != sizes.sum():
        raise BadInputError("a face or line record has an empty vertex index.")
    return idx, sizes, np.asarray(nv, dtype=np.int64), np.asarray(linenos, dtype=np.int64)


# What str.splitlines and str.split also take for line breaks and blanks, folded into the
# two bytes the bulk reader knows.
_OBJ_FOLD = bytes.maketrans(b"\t\x0b\x0c\x1c\x1d\x1e\x1f", b" \n\n\n\n\n ")
_OBJ_UNICODE_BLANK = re.compile("[\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def _obj_bulk(data: bytes):
    """OBJ reader by whole-file numpy passes, same result as ``_obj_by_line``.

    Returns ``None`` for anything it does not take (any error, a short ``v`` line, numbers
    outside numpy's text parser, indices past int64, ...): the line-by-line reader
    then reads the file or names its first bad line.
    """
    if not data.isascii() and _OBJ_UNICODE_BLANK.search(_text(data)):
        return None  # a line break or blank beyond ASCII, which str.split also takes
    if b"\\" in data:  # line continuations
        data = data.replace(b"\\\r\n", b" ").replace(b"\\\n", b" ")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    data = data.translate(_OBJ_FOLD)
    if b"#" in data:
        data = re.sub(rb"#[^\n]*", b"", data)
    # every line starts with its keyword, between two line breaks
    data = b"\n" + data + b"\n"
    if b"\n " in data:
        data = re.sub(rb"\n +", b"\n", data)
    buf = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(buf == 10)  # line k (0-based) runs from nl[k] + 1 to nl[k + 1]
    if np.count_nonzero(buf < 32) != len(nl):
        return None  # other control bytes: the passes below take every byte <= 32 as a blank
    start = nl[:-1] + 1
    last = len(buf) - 1
    c0 = buf[start]
    c1 = buf[np.minimum(start + 1, last)]
    key_end = (c1 == 32) | (c1 == 10)
    is_v = (c0 == ord("v")) & key_end
    is_f = (c0 == ord("f")) & key_end
    is_l = (c0 == ord("l")) & key_end
    c2 = buf[np.minimum(start + 2, last)]
    is_vn = (c0 == ord("v")) & (c1 == ord("n")) & ((c2 == 32) | (c2 == 10))
    vn_lines = _obj_lines(buf, nl, is_vn)
    if (vn_lines[2] < 4).any():
        return None  # a 'vn' line without three components
    V = _obj_floats(_obj_lines(buf, nl, is_v), 1)
    if V is None:
        return None
    if is_f.any() or is_l.any():
        sel = is_f if is_f.any() else is_l
        rec = _obj_records(buf, nl, sel, np.cumsum(is_v)[sel])
        if rec is None:
            return None
        return (V, None, rec, None) if sel is is_f else (V, None, None, rec)
    N = None
    if len(V) and np.count_nonzero(is_vn) == len(V):
        N = _obj_floats(vn_lines, 2)
        if N is None:
            return None
    return V, N, None, None


def _obj_lines(buf: np.ndarray, nl: np.ndarray, sel: np.ndarray):
    """The lines ``sel`` of a folded OBJ (see ``_obj_bulk``) as one writable byte array
    ``b"\\n" + line + b"\\n" + ...``; its blanks (positions), the tokens on each line
    (keyword included) and each line's first byte."""
    # copied run by run: a file keeps its v, vn and f lines together, one run each per object
    # (a byte mask repeated over the lines took 0.9 s on 1M faces, the slices 0.02 s)
    edge = np.flatnonzero(np.diff(sel.astype(np.int8), prepend=np.int8(0), append=np.int8(0)))
    runs = zip(nl[edge[0::2]].tolist(), nl[edge[1::2]].tolist(), strict=True)
    block = np.concatenate([buf[:1]] + [buf[a + 1 : b + 1] for a, b in runs])
    bnd = np.flatnonzero(block <= 32)  # every byte <= 32 is a space or a line break here
    tok = np.flatnonzero(np.diff(bnd) > 1)
    line_end = np.flatnonzero(block[bnd] == 10)
    per_line = np.diff(np.searchsorted(tok, line_end))
    return block, bnd, per_line, bnd[line_end[:-1]] + 1


def _blank_spans(block: np.ndarray, first: np.ndarray, last: np.ndarray) -> None:
    """Overwrite ``block[first[i] : last[i] + 1]`` with spaces; the spans do not overlap."""
    if len(first):
        d = np.zeros(len(block) + 1, dtype=np.int8)
        d[first] = 1
        d[last + 1] = -1
        block[np.cumsum(d[:-1], dtype=np.int8).view(bool)] = 32


def _parse_numbers(block: np.ndarray, dtype, count: int):
    """The ``count`` numbers of a blank-separated byte array, or ``None`` if it holds anything
    else (numpy's text parser warns and stops at the first bad character)."""
    if count == 0:
        return np.zeros(0, dtype=dtype)  # fromstring reads a blank string as one number
    sign = np.flatnonzero((block == ord("-")) | (block == ord("+")))
    after = block[sign + 1]  # the array ends with a line break, never with a sign
    if ((after == 32) | (after == 10)).any():
        return None  # a lone sign: fromstring reads it as the integer 0, or as the next number
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        try:
            out = np.fromstring(block.tobytes(), dtype=dtype, sep=" ")
        except (DeprecationWarning, ValueError):
            return None
    return out if len(out) == count else None


def _obj_floats(lines, key_len: int) -> Points | None:
    """``(n, 3)`` numbers 1-3 of ``v`` or ``vn`` lines (``_obj_lines``), or ``None``."""
    block, bnd, per_line, key = lines
    if (per_line < 4).any():
        return None
    if (per_line == 4).all():
        for k in range(key_len):
            block[key + k] = 32
    else:  # w, colours: keep x y z only
        tok = np.flatnonzero(np.diff(bnd) > 1)  # the blank before each token, among the blanks
        j = np.arange(len(tok)) - np.repeat(np.cumsum(per_line) - per_line, per_line)
        drop = (j == 0) | (j > 3)
        _blank_spans(block, bnd[tok[drop]] + 1, bnd[tok[drop] + 1] - 1)
    out = _parse_numbers(block, np.float64, 3 * len(per_line))
    return None if out is None else out.reshape(-1, 3)


def _obj_records(buf, nl, sel, nv) -> _ObjRecords | None:
    """The ``f`` or ``l`` lines ``sel`` as records, ``nv`` vertices before each; or ``None``."""
    block, bnd, per_line, _ = _obj_lines(buf, nl, sel)
    tok = np.flatnonzero(np.diff(bnd) > 1)  # the blank before each token, among the blanks
    start = bnd[tok]
    start = start[block[start] != 10]  # not the keyword, the first token of its line
    del bnd, tok
    start += 1
    idx = _leading_ints(block, start)
    if idx is None:
        return None
    return idx, per_line - 1, nv, np.flatnonzero(sel) + 1


def _leading_ints(block: np.ndarray, start: np.ndarray) -> np.ndarray | None:
    """The integer at each position ``start`` of ``block``: a sign or not, digits, then ``/``
    or a blank (``v/vt/vn``: the ``vt`` and ``vn`` parts are not read). ``None`` if one is
    not such a number, or has 19 digits or more (past int64). ``start`` is overwritten.

    Read digit by digit over all tokens at once, the ``/vt/vn`` parts skipped unread:
    blanking them for ``np.fromstring`` took 5 of the 9 s a 1M-face ``v/vt/vn`` file took.
    """
    c = block[start]
    neg = c == ord("-")
    pos = start  # in place: past the sign
    pos += neg | (c == ord("+"))
    del c
    # in place, with one index buffer: a pass makes no new int64 array as long as the tokens
    val = np.zeros(len(pos), dtype=np.int64)
    n_dig = np.zeros(len(pos), dtype=np.int8)
    going = np.ones(len(pos), dtype=bool)
    at = np.empty_like(pos)
    last = len(block) - 1
    for k in range(19):
        np.minimum(np.add(pos, k, out=at), last, out=at)
        d = block[at]
        going &= (d >= ord("0")) & (d <= ord("9"))
        if not going.any():
            break
        np.multiply(val, 10, out=val, where=going)
        np.add(val, d - ord("0"), out=val, where=going)
        n_dig += going
    else:
        return None
    np.minimum(np.add(pos, n_dig, out=at), last, out=at)
    after = block[at]
    if (n_dig == 0).any() or not ((after == ord("/")) | (after <= 32)).all():
        return None
    return np.negative(val, out=val, where=neg)


def _write_obj(fh, V: Points, F: Faces) -> None:
    fh.write(b"# written by LipSDF\n")
    if len(V):
        np.savetxt(fh, V, fmt="v %.9g %.9g %.9g")
    if len(F):
        np.savetxt(fh, F + 1, fmt="f %d %d %d")


# -- PLY --------------------------------------------------------------------------------------

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


def _read_ply(data: bytes) -> Geometry:
    if not data.startswith(b"ply"):
        raise BadInputError("not a PLY file (it does not start with 'ply').")
    m = re.search(rb"end_header[ \t]*\r?\n", data)
    if m is None:
        raise BadInputError("the PLY header has no 'end_header' line.")
    header = _text(data[: m.start()]).splitlines()
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
    return _fan([list(map(int, p)) for p in lists])


def _ply_ascii(body: bytes, elements: list[_PlyElement]) -> dict:
    rows = _text(body).splitlines()
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
            arr = _table(chunk, len(el.props), f"'{el.name}' values")
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


def _write_ply(fh, V: np.ndarray, F: Faces | None, names=("x", "y", "z")) -> None:
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


# -- STL --------------------------------------------------------------------------------------

_STL_RECORD = np.dtype([("n", "<f4", (3,)), ("v", "<f4", (3, 3)), ("attr", "<u2")])


def _read_stl(data: bytes) -> Geometry:
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
        text = _text(data)
        # [ \t] rather than \s: a \s* after ^ runs across line breaks, so every line start
        # of a run of blank lines rescanned the rest of the run (100k blank lines: ~1 min)
        nums = re.findall(r"^[ \t]*vertex[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)", text, flags=re.M)
        corners = _floats(nums, 3, "STL vertex coordinates")
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


def _write_stl(fh, V: Points, F: Faces) -> None:
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


# -- OFF --------------------------------------------------------------------------------------


def _read_off(data: bytes) -> Geometry:
    tokens_by_line = [ln.split("#", 1)[0].split() for ln in _text(data).splitlines()]
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
    V = _floats([r[:3] for r in rows[:nv]], 3, "OFF vertex coordinates")
    polys = []
    for r in rows[nv : nv + nf]:
        k = int(r[0])
        if len(r) < k + 1:
            raise BadInputError(f"an OFF face line is too short: '{' '.join(r)}'.")
        polys.append([int(x) for x in r[1 : k + 1]])
    if nf:
        return Geometry("mesh", V, faces=_fan(polys))
    return Geometry("points", V)


def _write_off(fh, V: Points, F: Faces) -> None:
    fh.write(f"OFF\n{len(V)} {len(F)} 0\n".encode("ascii"))
    if len(V):
        np.savetxt(fh, V, fmt="%.9g %.9g %.9g")
    if len(F):
        np.savetxt(fh, F, fmt="3 %d %d %d")


# -- XYZ --------------------------------------------------------------------------------------


def _read_xyz(data: bytes) -> Geometry:
    text = _text(data)
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
        raise BadInputError(f"some point coordinates are not numbers ({_one_line(exc)}).") from None
    if arr.size == 0:
        raise BadInputError("the point file has no points.")
    w = arr.shape[1]
    if w not in (3, 6):
        raise BadInputError(
            f"each line must be 'x y z' or 'x y z nx ny nz', but lines have {w} columns."
        )
    return Geometry("points", arr[:, :3].copy(), normals=arr[:, 3:].copy() if w == 6 else None)


# -- glTF / GLB / 3MF (trimesh) ---------------------------------------------------------------


def _read_scene(path: str, ext: str) -> Geometry:
    """Every mesh of a scene file, each moved by its node's world transform, as one mesh.

    A node that places the same mesh twice gives two copies. Without any triangles, the
    scene's point clouds are the points. Lines (glTF ``LINES``) are not read.
    """
    fmt = {".gltf": "glTF", ".glb": "GLB", ".3mf": "3MF"}[ext]
    try:
        # imported here so the worker and the add-on, which never read files, never load it
        import trimesh
    except ImportError as exc:
        raise BadInputError(
            f"reading {fmt} files needs the trimesh package ({_one_line(exc)}); "
            "install the versions in requirements.txt."
        ) from exc
    try:
        scene = trimesh.load_scene(path, file_type=ext[1:], process=False)
        meshes, clouds = [], []
        for node in scene.graph.nodes_geometry:
            T, name = scene.graph[node]
            g = scene.geometry[name]
            if isinstance(g, trimesh.Trimesh) and len(g.faces):
                meshes.append((trimesh.transform_points(g.vertices, T), g.faces))
            elif isinstance(g, trimesh.PointCloud) and len(g.vertices):
                clouds.append(trimesh.transform_points(g.vertices, T))
    except ImportError as exc:  # 3MF: trimesh defers lxml / networkx errors to the call
        raise BadInputError(
            f"reading {fmt} files needs lxml and networkx ({_one_line(exc)}); "
            "install the versions in requirements.txt."
        ) from exc
    except MemoryError as exc:
        raise BadInputError(
            f"the {fmt} file announces more data than fits in memory; it is corrupt."
        ) from exc
    except Exception as exc:  # trimesh's parsers raise anything (zip, XML, JSON, numpy)
        raise BadInputError(
            f"the {fmt} data is malformed or truncated ({type(exc).__name__}: {_one_line(exc)})."
        ) from exc
    if meshes:
        offsets = np.cumsum([0] + [len(V) for V, _ in meshes[:-1]])
        V = np.concatenate([np.asarray(V, dtype=np.float64) for V, _ in meshes])
        F = np.concatenate(
            [np.asarray(F, dtype=np.int64) + o for (_, F), o in zip(meshes, offsets, strict=True)]
        )
        return Geometry("mesh", V, faces=F)
    if clouds:
        return Geometry("points", np.concatenate(clouds).astype(np.float64))
    raise BadInputError(f"the {fmt} scene has no triangles and no points.")
