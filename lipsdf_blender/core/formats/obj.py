"""Wavefront OBJ: read vertices, faces, lines (and their normals); write triangles."""

from __future__ import annotations

import re
import warnings
from itertools import chain

import numpy as np

from ..errors import BadInputError
from ..inputs.geometry import Geometry
from ..types import Faces, Points
from .text import decode_text, fan_flat, number_rows, polylines_flat, write_table


def read_obj(data: bytes) -> Geometry:
    # Whole-file numpy passes read the usual file (1M faces, busy 2-core machine: 8.5 -> 1.7 s,
    # peak 849 -> 304 MiB; trimesh 3.7 s, 276 MiB); anything they do not take, an error above
    # all, goes to the line-by-line reader, which names the line. Both give the same records.
    parsed = _obj_bulk(data)
    if parsed is None:
        parsed = _obj_by_line(data)
    V, N, faces, lines = parsed
    if faces is not None:
        idx, sizes = _obj_resolve(*faces, len(V))
        return Geometry("mesh", V, faces=fan_flat(idx, sizes))
    if lines is not None:
        idx, sizes = _obj_resolve(*lines, len(V))
        return Geometry("curve", V, edges=polylines_flat(idx, sizes))
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
    text = decode_text(data).replace("\\\r\n", " ").replace("\\\n", " ")
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
    V = number_rows(verts, 3, "vertex coordinates")
    if elems["f"][0]:
        return V, None, _obj_parse_records(*elems["f"]), None
    if elems["l"][0]:
        return V, None, None, _obj_parse_records(*elems["l"])
    N = number_rows(normals, 3, "normals") if len(normals) == len(verts) and normals else None
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
    if not data.isascii() and _OBJ_UNICODE_BLANK.search(decode_text(data)):
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


def write_obj(fh, V: Points, F: Faces) -> None:
    fh.write(b"# written by LipSDF\n")
    if len(V):
        write_table(fh, V, "v %.9g %.9g %.9g")
    if len(F):
        write_table(fh, F + 1, "f %d %d %d")
