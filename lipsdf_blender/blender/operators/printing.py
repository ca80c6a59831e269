"""Operators for 3D printing: wall thickness as an attribute and a colour, and hollowing
(plans: :mod:`..plans.printing`)."""

from __future__ import annotations

import bpy
import numpy as np

from .. import convert, materials
from ..plans.printing import plan_hollow, plan_thickness
from ..props import hollow_properties, thickness_properties
from .base import JobOperator, field_tool
from .selection import supported_selected

THICKNESS = "lipsdf_thickness"
THICKNESS_COLOR = "lipsdf_thickness_color"
#: How far from a vertex its ball may stand, as a share of the minimum wall: a convex crease
#: (where a ball touching exactly there has no size) reads the ball that fits within it,
#: over the minimum wall at a right angle, below it at sharp edges (see core.tools.printing).
GAP = 0.25


def _meshes(context) -> list:
    """The selected meshes that have faces."""
    return [o for o in supported_selected(context) if o.type == "MESH" and len(o.data.polygons)]


@field_tool("thickness_", thickness_properties)
class LIPSDF_OT_thickness(JobOperator, bpy.types.Operator):
    """Wall thickness at every vertex of the selected meshes: the diameter of the largest
    empty ball inside touching there (attribute lipsdf_thickness, object units), coloured
    red where thinner than the minimum wall"""

    bl_idname = "lipsdf.thickness"
    bl_label = "Wall Thickness"

    @classmethod
    def poll_objects(cls, context) -> bool:
        """A selected mesh with faces."""
        if not _meshes(context):
            cls.poll_message_set("Select a mesh with faces")
            return False
        return True

    def objects(self, context):
        """The selected meshes with faces."""
        return _meshes(context)

    def gather(self, context, objs) -> None:
        """Each mesh's own vertices: where the thickness is measured."""
        self._points = {o.name: convert.mesh_vertices(o) for o in objs}

    def plan(self, sources, settings):
        """:func:`~..plans.printing.plan_thickness` at the vertices, balls within ``GAP``."""
        return plan_thickness(sources, self._points, settings, self.exact, GAP * self.min_wall)

    def build(self, context, outcome, made):
        """The thickness attributes (and the material when shown) on each mesh."""
        self._stats = []
        mat = materials.thickness_material(THICKNESS, self.min_wall) if self.show else None
        for name in self._names:
            obj = bpy.data.objects[name]
            t = outcome.arrays[name]["thickness"]
            convert.set_point_attribute(obj.data, THICKNESS, t)
            convert.set_point_attribute(
                obj.data, THICKNESS_COLOR, materials.thickness_colors(t, self.min_wall)
            )
            if mat is not None:
                materials.show_material(obj, mat)
            finite = t[np.isfinite(t)]
            thin = int(np.count_nonzero(finite < self.min_wall))
            self._stats.append((name, finite.min() if len(finite) else np.inf, thin, len(t)))

    def summary(self, outcome, made) -> str:
        """Each mesh's thinnest wall and how many vertices are below the minimum."""
        parts = [
            f"{name}: thinnest wall {low:.4g}, {thin:,} of {n:,} vertices below {self.min_wall:g}"
            for name, low, thin, n in self._stats
        ]
        return "LipSDF: " + "; ".join(parts)


@field_tool("hollow_", hollow_properties)
class LIPSDF_OT_hollow(JobOperator, bpy.types.Operator):
    """New closed shell of each selected object with walls of the given thickness (its
    surface minus the inward offset), ready to print; reports the material's volume"""

    bl_idname = "lipsdf.hollow"
    bl_label = "Hollow"
    uniform_scale_for = "its walls"

    def plan(self, sources, settings):
        """:func:`~..plans.printing.plan_hollow` with walls of ``wall``."""
        return plan_hollow(sources, settings, self.wall)

    def build(self, context, outcome, made):
        """``<name>.hollow<wall>`` per object, with the source's transform."""
        self._volumes = []
        for name in self._names:
            src = bpy.data.objects.get(name)
            V, F, _ = outcome.meshes[name][0]
            matrix = src.matrix_world.copy() if src is not None else None
            obj = convert.new_mesh_object(context, f"{name}.hollow{self.wall:g}", V, F, matrix, src)
            made.append(obj)
            info = outcome.info[name]
            self._volumes.append((obj.name, info.get("volume"), info.get("outer_volume")))

    def summary(self, outcome, made) -> str:
        """The shells made and their material's volume."""
        parts = [
            f"{name} (material {vol:.4g}, {vol / outer:.0%} of the solid)"
            if vol is not None and outer
            else name
            for name, vol, outer in self._volumes
        ]
        return "LipSDF: made " + ", ".join(parts) + " (object units³)"


classes = (LIPSDF_OT_thickness, LIPSDF_OT_hollow)
