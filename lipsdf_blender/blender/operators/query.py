"""Operators that query a field: surface points, projection onto it, distance attributes.

Fields are read in world space: the active object's field, placed by its transform, is asked
about the other selected objects' vertices where they are in the scene. Plans:
:mod:`..plans.query`.
"""

from __future__ import annotations

import bpy
import numpy as np

from ...core.errors import BadInputError
from .. import convert
from ..plans.query import plan_points, plan_project, plan_query
from ..props import exact_property, points_properties, project_properties
from .base import JobOperator, field_tool
from .selection import active_supported, other_selected

DISTANCE = "lipsdf_distance"
GRADIENT = "lipsdf_gradient"


def _targets(context) -> dict:
    """World vertices of the other selected meshes (the objects a query is about)."""
    targets = {o.name: convert.mesh_vertices(o, world=True) for o in other_selected(context)}
    targets = {k: v for k, v in targets.items() if len(v)}
    if not targets:
        raise BadInputError(
            "select the meshes to work on, then the object whose field is used last (active)"
        )
    return targets


def world_to_local(obj, P):
    """World points ``(n, 3)`` into ``obj``'s own coordinates."""
    M = np.array(obj.matrix_world, dtype=np.float64)
    return (np.asarray(P, dtype=np.float64) - M[:3, 3]) @ np.linalg.inv(M[:3, :3]).T


class _OntoActive(JobOperator):
    """The active object's field, other selected meshes as the targets."""

    uniform_scale_for = "distances in world space"

    @classmethod
    def poll_objects(cls, context) -> bool:
        """An active supported object and at least one other selected mesh."""
        if not active_supported(context) or not other_selected(context):
            cls.poll_message_set(
                "Select the meshes to work on, then the object whose field is used (active)"
            )
            return False
        return True

    def objects(self, context):
        """Only the active object: its field is used."""
        return active_supported(context)

    def gather(self, context, objs) -> None:
        """The other selected meshes' world vertices (the targets)."""
        self._targets = _targets(context)


@field_tool("points_", points_properties)
class LIPSDF_OT_surface_points(JobOperator, bpy.types.Operator):
    """New point cloud of evenly spread points on each selected object's surface (or a level
    set of its field), with normals from the field's gradient"""

    bl_idname = "lipsdf.surface_points"
    bl_label = "Surface Points"

    def plan(self, sources, settings):
        """:func:`~..plans.query.plan_points` with ``count`` and ``level``."""
        return plan_points(sources, settings, self.count, self.level)

    def build(self, context, outcome, made):
        """``<name>.points`` per object (a point cloud, with normals), its transform kept."""
        self._spacing = {}
        for name in self._names:
            a = outcome.arrays[name]
            src = bpy.data.objects.get(name)
            matrix = src.matrix_world.copy() if src is not None else None
            obj = convert.new_points_object(
                context, f"{name}.points", a["points"], a.get("normals"), matrix
            )
            made.append(obj)
            self._spacing[obj.name] = outcome.info[name].get("spacing") or {}

    def summary(self, outcome, made) -> str:
        """The points made and their spacing."""
        parts = []
        for obj in made:
            sp = self._spacing.get(obj.name) or {}
            items = obj.data.points if obj.type == "POINTCLOUD" else obj.data.vertices
            text = f"{obj.name} ({len(items):,} points"
            if sp.get("mean"):
                text += f", spacing {sp['mean']:.3g}, nearest {sp['min'] / sp['mean']:.0%} of it"
                text += f", variation {sp['cv']:.0%}"
            parts.append(text + ")")
        return "LipSDF: made " + ", ".join(parts)


@field_tool("project_", project_properties)
class LIPSDF_OT_project(_OntoActive, bpy.types.Operator):
    """Copies of the selected meshes with their vertices moved onto a level set of the active
    object's field, as new objects or shape keys; steps never overshoot"""

    bl_idname = "lipsdf.project"
    bl_label = "Project onto Field"

    def plan(self, sources, settings):
        """:func:`~..plans.query.plan_project` of the targets onto the active object's field."""
        return plan_project(sources[0], self._targets, settings, self.level, self.iterations)

    def build(self, context, outcome, made):
        """``<mesh>.onto.<active>`` per target: a copy, moved or with a shape key."""
        field = self._names[0]
        self._stuck = 0
        for name in self._targets:
            target = bpy.data.objects[name]
            a = outcome.arrays[name]
            self._stuck += int(np.count_nonzero(~a["converged"]))
            local = world_to_local(target, a["points"]).astype(np.float32)
            me = target.data.copy()
            obj = bpy.data.objects.new(f"{name}.onto.{field}", me)
            made.append(obj)
            obj.matrix_world = target.matrix_world.copy()
            convert.result_collection(context).objects.link(obj)
            if self.result == "OBJECT":
                if me.shape_keys is not None:
                    obj.shape_key_clear()
                me.vertices.foreach_set("co", local.ravel())
                me.update()
            else:
                if me.shape_keys is None:
                    obj.shape_key_add(name="Basis", from_mix=False)
                key = obj.shape_key_add(name=f"onto {field}", from_mix=False)
                key.data.foreach_set("co", local.ravel())
                key.value = 1.0

    def summary(self, outcome, made) -> str:
        """How many vertices moved, and how many did not converge."""
        n = sum(len(v) for v in self._targets.values())
        text = f"LipSDF: moved {n:,} vertices onto {self._names[0]}'s field"
        if self._stuck:
            text += f"; {self._stuck:,} did not converge (on a ridge of the field)"
        return text + " · made " + ", ".join(o.name for o in made)


@field_tool("distance_", lambda: exact_property("Distances"))
class LIPSDF_OT_distance_attributes(_OntoActive, bpy.types.Operator):
    """Write on every vertex of the selected meshes the signed distance to the active object
    (float attribute lipsdf_distance, world units) and its gradient (vector attribute
    lipsdf_gradient, world space), for shaders and Geometry Nodes"""

    bl_idname = "lipsdf.distance_attributes"
    bl_label = "Distance Attributes"

    def plan(self, sources, settings):
        """:func:`~..plans.query.plan_query` at the targets' vertices."""
        return plan_query(sources[0], self._targets, settings, self.exact)

    def build(self, context, outcome, made):
        """The distance and gradient attributes on each target's mesh (no new objects)."""
        arrays = [(bpy.data.objects[n].data, outcome.arrays[n]) for n in self._targets]
        self._ranges = []
        for me, a in arrays:
            convert.set_point_attribute(me, DISTANCE, a["values"])
            convert.set_point_attribute(me, GRADIENT, a["gradients"])
            self._ranges.append((float(a["values"].min()), float(a["values"].max())))

    def summary(self, outcome, made) -> str:
        """The attributes written and each target's range of distances."""
        parts = [
            f"{name} ({lo:.4g} .. {hi:.4g})"
            for name, (lo, hi) in zip(self._targets, self._ranges, strict=True)
        ]
        return f"LipSDF: {DISTANCE} and {GRADIENT} written on " + ", ".join(parts)


classes = (LIPSDF_OT_surface_points, LIPSDF_OT_project, LIPSDF_OT_distance_attributes)
