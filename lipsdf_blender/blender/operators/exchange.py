"""The hand-over to Blender's own SDF grids: a field's narrow band as an OpenVDB level set,
loaded as a Volume object (Blender 5.0's SDF grid nodes take its ``distance`` grid)."""

from __future__ import annotations

import re
from pathlib import Path

import bpy
import numpy as np

from ...core.errors import BadInputError
from .. import convert, prefs, vdb
from ..jobs import plan_grid
from ..props import grid_properties
from .base import _JobOperator, _tool

#: The automatic voxel: this fraction of the object's longest side.
AUTO_VOXELS = 200


def vdb_folder() -> Path:
    """Where the ``.vdb`` files go: ``lipsdf_vdb`` beside the saved .blend, else the cache."""
    if bpy.data.filepath:
        return Path(bpy.path.abspath("//")) / "lipsdf_vdb"
    return Path(prefs.cache_dir()) / "vdb"


def _file_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "field"


def auto_voxel(obj) -> float:
    box = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
    return float(np.max(box.max(axis=0) - box.min(axis=0))) / AUTO_VOXELS


@_tool("grid_", grid_properties)
class LIPSDF_OT_sdf_volume(_JobOperator, bpy.types.Operator):
    """New Volume object per selected object: its distance field's narrow band as an OpenVDB
    level set (grid "distance"), for Blender's SDF grid nodes"""

    bl_idname = "lipsdf.sdf_volume"
    bl_label = "SDF Volume (OpenVDB)"

    def gather(self, context, objs) -> None:
        vdb.openvdb_module()  # this Blender must be able to write the file: say so first
        self._voxels = {o.name: self.voxel or auto_voxel(o) for o in objs}
        for name, voxel in self._voxels.items():
            if not voxel > 0:
                raise BadInputError(f"{name} has no size: give a voxel size")

    def plan(self, sources, settings):
        return plan_grid(sources, settings, self._voxels, self.band, self.exact)

    def build(self, context, outcome, made):
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
        parts = [
            f"{name} ({n:,} voxels of {voxel:.4g} in {path.name})"
            for name, n, voxel, path in self._counts
        ]
        return "LipSDF: made " + ", ".join(parts)


classes = (LIPSDF_OT_sdf_volume,)
