"""A trained distance field in object units, and its ``.lipsdf`` file.

The file is a zip of numpy arrays (``np.savez``) read with ``allow_pickle=False``, so loading
never runs code. Besides the weights it holds one JSON document (stored as bytes in the array
``meta``) with the format version, the architecture, the normalisation and a record of how the
field was trained, and a SHA-256 over every array and the JSON; a truncated, edited or
mismatched file is refused with :class:`FieldFileError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ..errors import BadInputError, FieldFileError
from .detail import CloudSurface, InputSurface
from .network import LipschitzMLP

FORMAT = "lipsdf"
FORMAT_VERSION = 1
_WEIGHTS = ("W", "b", "q", "w_out", "b_out")


class Field:
    """A 1-Lipschitz distance field in the input's own units.

    ``f(x) = net((x - center) * scale) / scale``: the network works in a normalised box, and
    dividing by ``scale`` brings distances back to object units while keeping the bound.
    Follows the :class:`~lipsdf_blender.core.fields.sdf.DistanceField` protocol.

    Parameters
    ----------
    net : LipschitzMLP
    center : (3,) float, object units
    scale : float
        Normalised units per object unit.
    lo, hi : (3,) float
        Bounding box of the input geometry, object units.
    mode : {"signed", "unsigned"}
    record : dict
        How it was trained (JSON-serialisable).
    surface : InputSurface or CloudSurface, optional
        The input's triangles or segments, or a point cloud's prepared points, normals and
        areas (object units), kept so surfaces can be extracted with the input's own detail
        (:mod:`.detail`).
    """

    def __init__(
        self, net: LipschitzMLP, center, scale, lo, hi, mode="signed", record=None, surface=None
    ):
        self.net = net
        self.surface = surface
        self.center = np.asarray(center, dtype=np.float64)
        self.scale = float(scale)
        self.lo = np.asarray(lo, dtype=np.float64)
        self.hi = np.asarray(hi, dtype=np.float64)
        self.mode = mode
        self.record = dict(record or {})
        self._folded = None
        self._folded_device = None

    # -- evaluation -------------------------------------------------------------------------
    def folded(self, device: torch.device | str | None = None):
        """The inference form of the network on ``device`` (cached)."""
        device = torch.device(device or "cpu")
        if self._folded is None or self._folded_device != device:
            self._folded = self.net.folded().to(device)
            self._folded_device = device
        return self._folded

    def invalidate(self) -> None:
        """Forget the cached inference network (call after changing the weights)."""
        self._folded = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Field values at ``x (n, 3)`` (object units, float32); returns ``(n,)``."""
        net = self.folded(x.device)
        c = torch.as_tensor(self.center, dtype=x.dtype, device=x.device)
        return net((x - c) * self.scale) / self.scale

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Bounding box of the input geometry in object units."""
        return self.lo.copy(), self.hi.copy()

    def evaluate(self, P: np.ndarray, batch_size: int = 65536) -> np.ndarray:
        """Field values at ``P (n, 3)`` (object units) as float64 ``(n,)``."""
        from .query import evaluate

        return evaluate(self, P, batch_size=batch_size)

    # -- file -------------------------------------------------------------------------------
    def _meta(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "architecture": {"type": "sll", "depth": self.net.depth, "width": self.net.width},
            "normalization": {"center": self.center.tolist(), "scale": self.scale},
            "bounds": {"lo": self.lo.tolist(), "hi": self.hi.tolist()},
            "mode": self.mode,
            "record": self.record,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the field to ``path`` (``.lipsdf``) atomically; returns the path."""
        path = Path(path)
        arrays = {
            k: getattr(self.net, k).detach().cpu().float().numpy().astype("<f4") for k in _WEIGHTS
        }
        if isinstance(self.surface, CloudSurface):
            arrays["cloud_P"] = self.surface.V.astype("<f8")
            arrays["cloud_N"] = self.surface.N.astype("<f8")
            arrays["cloud_A"] = self.surface.A.astype("<f8")
        elif self.surface is not None:
            arrays["surface_V"] = self.surface.V.astype("<f8")
            arrays["surface_S"] = self.surface.S.astype("<i4")
        arrays["meta"] = np.frombuffer(json.dumps(self._meta()).encode(), dtype=np.uint8)
        arrays["checksum"] = np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Field:
        """Read a ``.lipsdf`` file; raises :class:`FieldFileError` if it is not a valid one."""
        path = Path(path)
        if not path.is_file():
            raise FieldFileError(f"field file not found: {path}")
        try:
            # Stored members only (np.savez): what a member holds is then bounded by the
            # file's own size, whatever its headers claim.
            arrays = read_npz(path, max_bytes=path.stat().st_size, compressed=False)
        except (ValueError, OSError) as exc:
            raise FieldFileError(
                f"{path.name} is not a readable .lipsdf file (truncated or corrupted: {exc}); "
                "train the field again"
            ) from None
        missing = [k for k in (*_WEIGHTS, "meta", "checksum") if k not in arrays]
        if missing:
            raise FieldFileError(f"{path.name} lacks {', '.join(missing)}; not a .lipsdf file")
        stored = arrays.pop("checksum").tobytes().decode(errors="replace")
        if stored != _digest(arrays):
            raise FieldFileError(
                f"{path.name} failed its integrity check (it was modified or damaged); "
                "train the field again"
            )
        try:
            meta = _meta(arrays["meta"])
            arch = meta["architecture"]
            depth, width = _whole(arch, "depth"), _whole(arch, "width")
            shapes = {
                "W": (depth, width, width),
                "b": (depth, width),
                "q": (depth, width),
                "w_out": (width,),
                "b_out": (),
            }
            # Every weight is checked before the network is made: a meta claiming a huge
            # depth or width must not allocate it.
            for k, shape in shapes.items():
                a = arrays[k]
                if a.shape != shape or a.dtype != np.dtype("<f4"):
                    raise ValueError(f"array {k} has shape {a.shape}, expected {shape}")
                if not np.isfinite(a).all():
                    raise ValueError(f"array {k} holds NaN or infinite values")
            net = LipschitzMLP(depth, width)
            with torch.no_grad():
                for k in shapes:
                    getattr(net, k).copy_(torch.from_numpy(arrays[k].copy()))
            norm, bounds = _object(meta, "normalization"), _object(meta, "bounds")
            center = _vector(norm, "center")
            lo, hi = _vector(bounds, "lo"), _vector(bounds, "hi")
            scale = norm.get("scale")
            if isinstance(scale, bool) or not isinstance(scale, int | float):
                raise ValueError(f"the scale is {str(scale)[:40]!r}, not a number")
            if not (lo <= hi).all():
                raise ValueError("its bounds have lo above hi")
            mode = meta.get("mode", "signed")
            if mode not in ("signed", "unsigned"):
                raise ValueError(f"mode {str(mode)[:40]!r} is neither signed nor unsigned")
            record = meta.get("record", {})
            if not isinstance(record, dict):
                raise ValueError("its record is not a JSON object")
            field = cls(net, center, scale, lo, hi, mode, record, _surface(arrays))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, BadInputError) as exc:
            raise FieldFileError(f"{path.name} is not a valid .lipsdf file: {_line(exc)}") from None
        if not (np.isfinite(field.center).all() and np.isfinite(field.scale) and field.scale > 0):
            raise FieldFileError(f"{path.name} has an invalid normalisation")
        return field


def _line(exc: BaseException) -> str:
    """An exception as one short line (a KeyError's message is the key's repr)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"it lacks the entry {text}"
    return text if len(text) <= 200 else text[:197] + "..."


def _meta(a: np.ndarray) -> dict:
    """The JSON document stored in the ``meta`` array, format and version checked."""
    if a.dtype != np.dtype("u1") or a.ndim != 1:
        raise ValueError("its meta is not a byte string")
    try:
        meta = json.loads(a.tobytes().decode())
    except RecursionError:
        raise ValueError("its meta is nested too deeply") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError("not a lipsdf file")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"format version {str(meta.get('version'))[:40]} is not supported")
    return meta


def _object(d, key: str) -> dict:
    v = d.get(key) if isinstance(d, dict) else None
    if not isinstance(v, dict):
        raise ValueError(f"its {key} is not a JSON object")
    return v


def _whole(d, key: str) -> int:
    v = d.get(key) if isinstance(d, dict) else None
    if isinstance(v, bool) or not isinstance(v, int) or not 0 < v < 1 << 20:
        raise ValueError(f"its architecture's {key} is {str(v)[:40]!r}, not a positive integer")
    return v


def _vector(d: dict, key: str) -> np.ndarray:
    """Three finite numbers."""
    v = d.get(key)
    ok = isinstance(v, list) and len(v) == 3
    ok = ok and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    a = np.asarray(v, dtype=np.float64) if ok else None
    if a is None or not np.isfinite(a).all():
        raise ValueError(f"its {key} is {str(v)[:60]!r}, not three finite numbers")
    return a


def read_npz(path, max_bytes: int, compressed: bool = True) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read without trusting its headers.

    Unlike ``np.load`` this never unpickles, never allocates what a header claims before
    checking it against the member's real size and ``max_bytes``, and reads a compressed
    (deflated) member only up to the size its array header gives, so a zip bomb or a lying
    shape costs nothing.

    Parameters
    ----------
    path : str or path-like
    max_bytes : int
        Most bytes all arrays together may hold.
    compressed : bool
        Whether deflated members are read (``False``: only stored ones, as ``np.savez``
        writes them).

    Returns
    -------
    dict
        Array name (the member name without ``.npy``) -> array of a plain numeric dtype
        (bool, integer, float, complex).

    Raises
    ------
    ValueError
        With a one-line reason: not a zip, a member that is not a plain ``.npy`` array,
        duplicate names, sizes that do not add up, or more than ``max_bytes``.
    OSError
        The file cannot be read.
    """
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ValueError(f"not a zip of arrays ({_line(exc)})") from None
    size = os.path.getsize(path)
    out: dict[str, np.ndarray] = {}
    total = 0
    with zf:
        for info in zf.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in out:
                raise ValueError(f"member {name[:60]!r} is not an array or is there twice")
            allowed = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) if compressed else (0,)
            if info.compress_type not in allowed or info.flag_bits & 0x1:
                raise ValueError(f"member {name[:60]!r} is encrypted or compressed")
            if info.compress_type == zipfile.ZIP_STORED and (
                info.file_size != info.compress_size
                or info.header_offset + info.compress_size > size
            ):
                raise ValueError(f"member {name[:60]!r} claims more bytes than the file holds")
            try:
                with zf.open(info) as fh:
                    a = _read_npy(fh, info.file_size, max_bytes - total)
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise ValueError(f"member {name[:60]!r} is damaged ({_line(exc)})") from None
            total += a.nbytes
            out[name[:-4]] = a
    return out


def _read_npy(fh, member_size: int, budget: int) -> np.ndarray:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unknown .npy version {version}")
    except Exception as exc:  # numpy's header parser raises what ast and tokenize raise
        raise ValueError(f"an array header is damaged ({_line(exc)})") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"an array header claims shape {shape}")
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "biufc":
        raise ValueError(f"an array has dtype {str(dtype)[:40]}, not plain numbers")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > budget or nbytes != member_size - fh.tell():
        raise ValueError(
            f"an array header claims shape {shape} ({nbytes} bytes), which does not match "
            "the data or exceeds what may be read"
        )
    data = fh.read(nbytes)
    if len(data) != nbytes:
        raise ValueError("an array is truncated")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C").copy()


def _cloud(arrays: dict[str, np.ndarray]):
    """The optional prepared cloud (``cloud_P``, ``cloud_N``, ``cloud_A``), checked."""
    P, N, A = (arrays.get(k) for k in ("cloud_P", "cloud_N", "cloud_A"))
    if P is None or N is None or A is None:
        raise ValueError("it holds part of a point cloud")
    for name, a, width in (("cloud_P", P, 3), ("cloud_N", N, 3), ("cloud_A", A, 0)):
        shape_ok = a.ndim == 2 and a.shape[1] == 3 if width else a.ndim == 1
        if a.dtype != np.dtype("<f8") or not shape_ok or len(a) != len(P):
            raise ValueError(f"{name} has dtype {a.dtype} and shape {a.shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    return CloudSurface(P, N, A)


def _surface(arrays: dict[str, np.ndarray]):
    """The optional input surface (``surface_V``, ``surface_S``, or a cloud's ``cloud_*``),
    checked; or ``None``."""
    if any(k.startswith("cloud_") for k in arrays):
        return _cloud(arrays)
    if "surface_V" not in arrays and "surface_S" not in arrays:
        return None
    V, S = arrays.get("surface_V"), arrays.get("surface_S")
    if V is None or S is None:
        raise ValueError("it holds half of an input surface")
    if V.dtype != np.dtype("<f8") or V.ndim != 2 or V.shape[1] != 3:
        raise ValueError(f"surface_V has dtype {V.dtype} and shape {V.shape}, expected (n, 3)")
    if S.dtype != np.dtype("<i4") or S.ndim != 2 or S.shape[1] not in (2, 3):
        raise ValueError(f"surface_S has dtype {S.dtype} and shape {S.shape}, expected (m, 2|3)")
    if not np.isfinite(V).all():
        raise ValueError("surface_V holds NaN or infinite values")
    return InputSurface(V, S)


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode())
        h.update(str(a.dtype.str).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()
