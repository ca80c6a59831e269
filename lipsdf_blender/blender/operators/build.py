"""Operators that build surfaces: train, remesh, offset, CSG, and cancel (plans:
:mod:`..plans.build`)."""

from __future__ import annotations

import bpy

from ...core.errors import BadInputError
from .. import convert
from ..plans.build import (
    CSG_RESULT,
    plan_csg,
    plan_offset,
    plan_remesh,
    plan_train,
    remesh_requests,
)
from ..plans.common import count_requests
from ..props import csg_properties, offset_properties
from .base import JobOperator, busy, parse_distances, stop_job, with_settings
from .selection import active_first

CSG_SYMBOLS = {"union": "∪", "intersection": "∩", "difference": "∖"}


@with_settings()
class LIPSDF_OT_train(JobOperator, bpy.types.Operator):
    """Train a distance field for each selected mesh, point cloud or curve and keep it with
    the object (signed for surfaces and clouds, unsigned for curves)"""

    bl_idname = "lipsdf.train"
    bl_label = "Train Field"
    reuse_fields = False
    plan = staticmethod(plan_train)

    def stages(self, sources) -> int:
        """One training per object."""
        return len(sources)


@with_settings()
class LIPSDF_OT_remesh(JobOperator, bpy.types.Operator):
    """New object from the zero level set of each selected object's field: a clean, closed
    remesh (trains the field first when there is none)"""

    bl_idname = "lipsdf.remesh"
    bl_label = "Remesh"
    plan = staticmethod(plan_remesh)

    def stages(self, sources) -> int:
        """A training and a remesh per object without a field, and the previews."""
        return remesh_requests(sources, self.settings())

    def build(self, context, outcome, made):
        """``<name>.remesh`` per object, with the source's transform (but those already
        built from a final delivery; one that shows a preview gets the remesh in place)."""
        for name in self._names:
            if name in self._early_keys:
                continue
            shown = self.early_objects(name)
            if shown:
                self.update_early(context, outcome, name, shown)
            else:
                self.build_early(context, outcome, [name], made)

    def build_early(self, context, outcome, keys, made):
        """``<name>.remesh`` for each of ``keys``, with the source's transform."""
        for name in keys:
            src = bpy.data.objects.get(name)
            V, F, _ = outcome.meshes[name][0]
            matrix = src.matrix_world.copy() if src is not None else None
            made.append(convert.new_mesh_object(context, f"{name}.remesh", V, F, matrix, src))

    def update_early(self, context, outcome, key, objs):
        """The preview ``<name>.remesh`` gets the remesh's triangles, in place."""
        V, F, _ = outcome.meshes[key][0]
        convert.replace_mesh(objs[0], V, F)

    def summary(self, outcome, made) -> str:
        """The made objects, and where each surface came from (input or field)."""
        line = super().summary(outcome, made)
        said = [
            f"{name}: {w}"
            for name in self._names
            if (w := outcome.info.get(name, {}).get("witnesses"))
        ]
        return "; ".join([line, *said])


@with_settings(offset_properties)
class LIPSDF_OT_offset(JobOperator, bpy.types.Operator):
    """New objects at one or several distances from each selected object's surface, in object
    units (negative = inward; trains the field first when there is none)"""

    bl_idname = "lipsdf.offset"
    bl_label = "Offset"
    uniform_scale_for = "its offsets"
    scene_keys = ("distances", "exact")

    def plan(self, sources, settings):
        """:func:`~..plans.build.plan_offset` at the distances typed in ``distances``."""
        return plan_offset(sources, settings, parse_distances(self.distances), self.exact)

    def build(self, context, outcome, made):
        """``<name>.offset<distance>`` per object and distance, with the source's transform."""
        for name in self._names:
            src = bpy.data.objects.get(name)
            matrix = src.matrix_world.copy() if src is not None else None
            for V, F, level in outcome.meshes[name]:
                made.append(
                    convert.new_mesh_object(context, f"{name}.offset{level:+g}", V, F, matrix, src)
                )


@with_settings(csg_properties)
class LIPSDF_OT_csg(JobOperator, bpy.types.Operator):
    """Combine the active object with the other selected ones in world space (union,
    intersection, difference, optionally smooth) into one new object"""

    bl_idname = "lipsdf.csg"
    bl_label = "Combine (CSG)"
    uniform_scale_for = "distances in the combination"
    scene_keys = ("operation", "smooth", "blend")

    @classmethod
    def poll_objects(cls, context) -> bool:
        """Two or more supported objects, one of them active."""
        if len(active_first(context)) < 2:
            cls.poll_message_set(
                "Select two or more meshes, curves or point clouds; the active one comes first"
            )
            return False
        return True

    def objects(self, context):
        """The active object first, then the other selected ones by name."""
        objs = active_first(context)
        if len(objs) < 2:
            raise BadInputError("CSG needs the active object and at least one other selected")
        return objs

    def plan(self, sources, settings):
        """:func:`~..plans.build.plan_csg` (``blend`` 0 unless Smooth)."""
        blend = self.blend if self.smooth else 0.0
        return plan_csg(sources, settings, self.operation, blend)

    def stages(self, sources) -> int:
        """Trainings where needed, then one ``csg`` for all."""
        return count_requests(sources, per_source=0, shared=1)

    def build(self, context, outcome, made):
        """One object in world space, named by its operands (``A∪B``, ``.smooth<r>``)."""
        V, F, _ = outcome.meshes[CSG_RESULT][0]
        name = CSG_SYMBOLS[self.operation].join(self._names)
        if self.smooth and self.blend > 0:
            name += f".smooth{self.blend:g}"
        like = bpy.data.objects.get(self._names[0])
        made.append(convert.new_mesh_object(context, name, V, F, None, like))


class LIPSDF_OT_cancel(bpy.types.Operator):
    """Stop the running LipSDF job; nothing it would have made is added"""

    bl_idname = "lipsdf.cancel"
    bl_label = "Cancel LipSDF Job"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        """Only while a job runs."""
        if not busy():
            cls.poll_message_set("No LipSDF job is running")
            return False
        return True

    def execute(self, context):
        """Cancel the running job and wait briefly for the worker to confirm."""
        stop_job()
        self.report({"INFO"}, "LipSDF: the running job was cancelled")
        return {"FINISHED"}


classes = (
    LIPSDF_OT_train,
    LIPSDF_OT_remesh,
    LIPSDF_OT_offset,
    LIPSDF_OT_csg,
    LIPSDF_OT_cancel,
)
