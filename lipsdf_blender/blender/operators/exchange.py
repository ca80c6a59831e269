"""The hand-over to Blender's own SDF grids: a field's narrow band as an OpenVDB level set,
loaded as a Volume object (Blender 5.0's SDF grid nodes take its ``distance`` grid). Plan:
:mod:`..plans.exchange`."""

from __future__ import annotations

import re
from pathlib import Path

import bpy
import numpy as np

from ...core.errors import BadInputError
from .. import convert, prefs, vdb
from ..plans.exchange import plan_grid
from ..props import grid_properties
from .base import JobOperator, field_tool

#: The automatic voxel: this fraction of the object's longest side.
AUTO_VOXELS = 200


def vdb_folder() -> Path:
    """Where the ``.vdb`` files go: ``lipsdf_vdb`` beside the saved .blend, else the cache."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//")) / "lipsdf_vdb"
    return Path(prefs.cache_dir()) / "vdb"


def _file_name(name: str) -> str:
    """``name`` made safe as a file name."""
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "field"


def auto_voxel(obj) -> float:
    """The automatic voxel size: the object's longest side over :data:`AUTO_VOXELS`."""
    box = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
    return float(np.max(box.max(axis=0) - box.min(axis=0))) / AUTO_VOXELS


@field_tool("grid_", grid_properties)
class LIPSDF_OT_sdf_volume(JobOperator, bpy.types.Operator):
    """New Volume object per selected object: its distance field's narrow band as an OpenVDB
    level set (grid "distance"), for Blender's SDF grid nodes"""

    bl_idname = "lipsdf.sdf_volume"
    bl_label = "SDF Volume (OpenVDB)"

    def gather(self, context, objs) -> None:
        """Check that OpenVDB can be written, and each object's voxel size."""
        vdb.openvdb_module()  # this Blender must be able to write the file: say so first
        self._voxels = {o.name: self.voxel or auto_voxel(o) for o in objs}
        for name, voxel in self._voxels.items():
            if not voxel > 0:
                raise BadInputError(f"{name} has no size: give a voxel size")

    def plan(self, sources, settings):
        """:func:`~..plans.exchange.plan_grid` with the voxels, ``band`` and ``exact``."""
        return plan_grid(sources, settings, self._voxels, self.band, self.exact)

    def build(self, context, outcome, made):
        """Write each ``.vdb`` and load it as ``<name>.sdf``, with the source's transform."""
        folder = vdb_folder()
        folder.mkdir(parents=True, exist_ok=True)
        self._counts = []
        for name in self._names:
            a = outcome.arrays[name]
            voxel = float(a["voxel"])
            path = folder / f"{_file_name(name)}.vdb"
            vdb.write_level_set(str(path), a["ijk"], a["values"], voxel, float(self.band))
            src = bpy.data.objects.get(name)
            matrix = src.matrix_world.copy() if src is not None else None
            obj = vdb.load_volume(
                convert.result_collection(context), path, f"{name}.sdf", matrix=matrix
            )
            made.append(obj)
            if bpy.data.filepath:  # a saved .blend keeps the file beside it, relative
                obj.data.filepath = bpy.path.relpath(str(path))
            self._counts.append((obj.name, len(a["values"]), voxel, path))

    def summary(self, outcome, made) -> str:
        """The volumes made: voxels, voxel size and file."""
        parts = [
            f"{name} ({n:,} voxels of {voxel:.4g} in {path.name})"
            for name, n, voxel, path in self._counts
        ]
        return "LipSDF: made " + ", ".join(parts)


classes = (LIPSDF_OT_sdf_volume,)
