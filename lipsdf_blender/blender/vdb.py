"""OpenVDB level sets from a field's narrow band, written by the add-on for Blender's SDF grids.

The worker samples the band (:func:`lipsdf_blender.core.tools.grid.narrow_band`, job ``grid``) and
writes arrays; this module, on the Blender side, turns them into a ``.vdb`` with the
``openvdb`` module of Blender's own Python (Blender 5.0 and later ship it; some older builds
called it ``pyopenvdb``). It imports only numpy and openvdb: never torch, and ``bpy`` only
inside :func:`load_volume`, so it runs in any Python that has openvdb on ``sys.path``.

The grid written
----------------
- a ``FloatGrid`` named ``distance`` (by default), grid class *level set*;
- a linear transform of uniform voxel size ``voxel`` and no offset: voxel ``ijk`` (integers)
  has its centre at ``ijk * voxel`` in the source object's own units and space;
- active voxels: the band, ``|value| < band * voxel``, signed distances (negative inside);
- background ``band * voxel``; after a signed flood fill the inactive voxels and tiles inside
  the surface read ``-background`` and those outside ``+background``, as OpenVDB's and
  Blender's level-set tools expect.

A Volume object that loads the file and has the source object's matrix (:func:`load_volume`
with ``matrix=source.matrix_world``) puts every voxel at its world position; Blender's SDF grid
nodes (Get Named Grid ``distance`` as Float, SDF Grid Offset / Boolean / Fillet, Grid to Mesh
at threshold 0) then work on it directly.

Example
-------
>>> info = write_level_set("part.vdb", ijk, values, voxel=0.01, band=3.0)  # doctest: +SKIP
>>> load_volume(bpy.context, "part.vdb", "part", obj.matrix_world)  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import importlib
import importlib.util
import math
import os
import sys

import numpy as np

from ..core.errors import BadInputError, LipSDFError

__all__ = ["GRID_NAME", "load_volume", "openvdb_module", "read_values", "write_level_set"]

#: Name of the grid in the files written here.
GRID_NAME = "distance"
#: Largest dense float32 block copied into the grid at once; bigger boxes go in slabs.
MAX_DENSE_BYTES = 512 << 20
#: Slabs start at multiples of OpenVDB's leaf size.
_LEAF = 8


def openvdb_module():
    """The ``openvdb`` module of this Python (``pyopenvdb`` in some older builds; for Blender
    built as a Python module, the one in its own folder).

    Returns
    -------
    module

    Raises
    ------
    LipSDFError
        Neither module can be imported.
    """
    for name in ("openvdb", "pyopenvdb"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    module = _from_bpy_module()
    if module is not None:
        return module
    raise LipSDFError(
        "this Blender has no openvdb module; Blender 5.0 or later is needed to write OpenVDB "
        "grids (and for its SDF grid nodes)"
    )


def _from_bpy_module():
    """Blender built as a Python module (``pip install bpy``) ships openvdb in its own
    ``python/lib/pythonX.Y/site-packages`` without putting that folder on ``sys.path``, as
    Blender itself does: load just that module from there (only where bpy is already
    imported; never import bpy here)."""
    bpy = sys.modules.get("bpy")
    if bpy is None:
        return None
    try:
        scripts = bpy.utils.system_resource("SCRIPTS")
    except Exception:  # noqa: BLE001 - a stub or broken bpy: no openvdb from it
        return None
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    folder = os.path.join(scripts, "..", "python", "lib", version, "site-packages")
    files = sorted(glob.glob(os.path.join(glob.escape(folder), "openvdb*.so")))
    files += sorted(glob.glob(os.path.join(glob.escape(folder), "openvdb*.pyd")))
    if not files:
        return None
    spec = importlib.util.spec_from_file_location("openvdb", files[0])
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["openvdb"] = module
    return module


def _check_band(ijk, values, voxel: float, band: float):
    ijk = np.asarray(ijk)
    values = np.asarray(values)
    if ijk.ndim != 2 or ijk.shape[1:] != (3,) or ijk.dtype.kind not in "iu":
        raise BadInputError(f"ijk must be an (n, 3) integer array, got shape {ijk.shape}")
    if values.shape != (len(ijk),) or values.dtype.kind != "f":
        raise BadInputError(f"values must be ({len(ijk)},) floats, got shape {values.shape}")
    if len(ijk) == 0:
        raise BadInputError("the band is empty (the field has no surface on this grid)")
    for name, v in (("voxel", voxel), ("band", band)):
        if not isinstance(v, int | float | np.floating | np.integer) or not math.isfinite(v):
            raise BadInputError(f"{name} must be a finite number > 0, got {v!r}")
        if v <= 0:
            raise BadInputError(f"{name} must be a finite number > 0, got {v!r}")
    values = values.astype(np.float32)
    background = np.float32(float(band) * float(voxel))
    if not np.all(np.isfinite(values)) or np.abs(values).max() >= background:
        raise BadInputError(
            "the band's values must be finite and below band * voxel in size; write the "
            "arrays of the grid job as they came"
        )
    return ijk.astype(np.int64), values, float(background)


def _slabs(lo: np.ndarray, hi: np.ndarray, max_bytes: int):
    """Ranges ``[a, b]`` of the first index covering ``lo[0]..hi[0]``, each at most
    ``max_bytes`` of float32 over the other two axes, starting at multiples of the leaf size."""
    plane = int((hi[1] - lo[1] + 1) * (hi[2] - lo[2] + 1)) * 4
    width = max(_LEAF, (max_bytes // max(plane, 1)) // _LEAF * _LEAF)
    a = int(lo[0])
    while a <= hi[0]:
        b = min(int(hi[0]), (a // _LEAF) * _LEAF + width - 1)
        yield a, b
        a = b + 1


def write_level_set(
    path,
    ijk,
    values,
    voxel: float,
    band: float,
    name: str = GRID_NAME,
    max_dense_bytes: int = MAX_DENSE_BYTES,
) -> dict:
    """Write a narrow band as an OpenVDB level set (one FloatGrid) to a ``.vdb`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.vdb`` file; replaced if it exists.
    ijk : (n, 3) int
        Voxel indices of the band (centre ``ijk * voxel``), each once.
    values : (n,) float
        Signed distances there (object units, negative inside), ``|values| < band * voxel``.
    voxel : float
        Voxel side, object units.
    band : float
        Half-width of the band in voxels; the background is ``band * voxel``.
    name : str
        The grid's name (what Blender's Get Named Grid node asks for).
    max_dense_bytes : int
        Largest dense block filled at once; a bigger band box is filled slab by slab.

    Returns
    -------
    dict
        ``active_voxels`` (int), ``bbox`` (``[[i, j, k], [i, j, k]]`` active index bounds),
        ``memory`` (bytes the grid takes), ``background``, ``voxel``, ``name``.

    Raises
    ------
    LipSDFError
        No openvdb module.
    BadInputError
        Arrays of the wrong shape, values outside the band, bad sizes.

    Examples
    --------
    >>> from lipsdf_blender.core.tools.grid import narrow_band  # worker side  # doctest: +SKIP
    >>> ijk, values = narrow_band(SphereField(radius=1.0), voxel=0.05)  # doctest: +SKIP
    >>> write_level_set("sphere.vdb", ijk, values, voxel=0.05, band=3.0)["active_voxels"]
    ... # doctest: +SKIP
    """
    ijk, values, background = _check_band(ijk, values, voxel, band)
    vdb = openvdb_module()
    grid = vdb.FloatGrid(background)
    grid.name = str(name)
    grid.gridClass = vdb.GridClass.LEVEL_SET
    grid.transform = vdb.createLinearTransform(voxelSize=float(voxel))
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    # Values equal to the background become inactive (tolerance 0), so a dense box of
    # +background holding the band voxels gives exactly the band as active voxels.
    order = np.argsort(ijk[:, 0], kind="stable")
    ijk, values = ijk[order], values[order]
    for a, b in _slabs(lo, hi, max_dense_bytes):
        s, e = np.searchsorted(ijk[:, 0], [a, b + 1])
        if s == e:
            continue
        dense = np.full(
            (b - a + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1), background, dtype=np.float32
        )
        local = ijk[s:e] - np.array([a, lo[1], lo[2]])
        dense[local[:, 0], local[:, 1], local[:, 2]] = values[s:e]
        grid.copyFromArray(dense, ijk=(int(a), int(lo[1]), int(lo[2])), tolerance=0.0)
        del dense
    grid.signedFloodFill()
    grid.prune()
    tmp = f"{os.fspath(path)}.part"
    vdb.write(tmp, grids=[grid])
    os.replace(tmp, os.fspath(path))
    box = grid.evalActiveVoxelBoundingBox()
    return {
        "active_voxels": int(grid.activeVoxelCount()),
        "bbox": [list(map(int, box[0])), list(map(int, box[1]))],
        "memory": int(grid.memUsage()),
        "background": background,
        "voxel": float(voxel),
        "name": grid.name,
    }


def read_values(path, ijk, name: str = GRID_NAME, max_dense_bytes: int = MAX_DENSE_BYTES):
    """Values of a ``.vdb`` grid at voxels (active or not).

    Parameters
    ----------
    path : str or os.PathLike
    ijk : (n, 3) int
        Voxel indices.
    name : str
        The grid to read.
    max_dense_bytes : int
        Largest dense block read at once (the indices' box is read slab by slab).

    Returns
    -------
    (n,) float32
        The grid's value at each voxel: the stored value in the band, ``-background``
        inside and ``+background`` outside elsewhere (for a flood-filled level set).

    Examples
    --------
    >>> read_values("sphere.vdb", np.zeros((1, 3), int))  # doctest: +SKIP
    array([-0.15], dtype=float32)
    """
    vdb = openvdb_module()
    ijk = np.asarray(ijk)
    if ijk.ndim != 2 or ijk.shape[1:] != (3,) or ijk.dtype.kind not in "iu":
        raise BadInputError(f"ijk must be an (n, 3) integer array, got shape {ijk.shape}")
    grid = vdb.read(os.fspath(path), name)
    out = np.empty(len(ijk), dtype=np.float32)
    if len(ijk) == 0:
        return out
    ijk = ijk.astype(np.int64)
    lo, hi = ijk.min(axis=0), ijk.max(axis=0)
    for a, b in _slabs(lo, hi, max_dense_bytes):
        rows = np.flatnonzero((ijk[:, 0] >= a) & (ijk[:, 0] <= b))
        if len(rows) == 0:
            continue
        dense = np.empty((b - a + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1), dtype=np.float32)
        grid.copyToArray(dense, ijk=(int(a), int(lo[1]), int(lo[2])))
        local = ijk[rows] - np.array([a, lo[1], lo[2]])
        out[rows] = dense[local[:, 0], local[:, 1], local[:, 2]]
    return out


def load_volume(collection, path, name: str, matrix=None):
    """A new Volume object that loads a ``.vdb`` file, linked to a collection.

    Parameters
    ----------
    collection : bpy.types.Collection or bpy.types.Context
        Where the object goes; a context means its scene's active collection.
    path : str or os.PathLike
        The ``.vdb`` file (written by :func:`write_level_set`).
    name : str
        Name of the new Volume data and object.
    matrix : 4x4, optional
        The object's world matrix (``source.matrix_world``: the grid is in the source's own
        units and space); identity by default.

    Returns
    -------
    bpy.types.Object
        The Volume object, its grids loaded.

    Raises
    ------
    LipSDFError
        Blender cannot read the file (the message is Blender's own); nothing is left behind.

    Examples
    --------
    >>> ob = load_volume(bpy.context, "part.vdb", "part SDF", src.matrix_world)  # doctest: +SKIP
    """
    import bpy  # only here: the rest of the module runs without Blender

    if isinstance(collection, bpy.types.Context):
        collection = collection.view_layer.active_layer_collection.collection
    volume = bpy.data.volumes.new(name)
    volume.filepath = os.fspath(path)
    if not volume.grids.load():
        message = volume.grids.error_message or "unknown error"
        bpy.data.volumes.remove(volume)
        raise LipSDFError(f"Blender cannot read the grid file {os.fspath(path)}: {message}")
    ob = bpy.data.objects.new(name, volume)
    if matrix is not None:
        ob.matrix_world = matrix
    collection.objects.link(ob)
    return ob
