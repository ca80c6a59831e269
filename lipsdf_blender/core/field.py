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
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .detail import CloudSurface, InputSurface
from .errors import BadInputError, FieldFileError
from .network import LipschitzMLP

FORMAT = "lipsdf"
FORMAT_VERSION = 1
_WEIGHTS = ("W", "b", "q", "w_out", "b_out")


class Field:
    """A 1-Lipschitz distance field in the input's own units.

    ``f(x) = net((x - center) * scale) / scale``: the network works in a normalised box, and
    dividing by ``scale`` brings distances back to object units while keeping the bound.
    Follows the :class:`~lipsdf_blender.core.sdf.DistanceField` protocol.

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
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
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
            meta = json.loads(arrays["meta"].tobytes().decode())
            if meta.get("format") != FORMAT:
                raise ValueError("not a lipsdf file")
            if meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"format version {meta.get('version')} is not supported")
            arch = meta["architecture"]
            depth, width = int(arch["depth"]), int(arch["width"])
            net = LipschitzMLP(depth, width)
            shapes = {
                "W": (depth, width, width),
                "b": (depth, width),
                "q": (depth, width),
                "w_out": (width,),
                "b_out": (),
            }
            with torch.no_grad():
                for k, shape in shapes.items():
                    a = arrays[k]
                    if a.shape != shape or a.dtype != np.dtype("<f4"):
                        raise ValueError(f"array {k} has shape {a.shape}, expected {shape}")
                    if not np.isfinite(a).all():
                        raise ValueError(f"array {k} holds NaN or infinite values")
                    getattr(net, k).copy_(torch.from_numpy(a.copy()))
            norm, bounds = meta["normalization"], meta["bounds"]
            field = cls(
                net,
                norm["center"],
                norm["scale"],
                bounds["lo"],
                bounds["hi"],
                meta.get("mode", "signed"),
                meta.get("record", {}),
                _surface(arrays),
            )
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, BadInputError) as exc:
            raise FieldFileError(f"{path.name} is not a valid .lipsdf file: {exc}") from None
        if not (np.isfinite(field.center).all() and np.isfinite(field.scale) and field.scale > 0):
            raise FieldFileError(f"{path.name} has an invalid normalisation")
        return field


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
