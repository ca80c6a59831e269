"""Operators that draw a field: a slice picture and the sphere-traced preview (plans:
:mod:`..plans.pictures`)."""

from __future__ import annotations

import math

import bpy
import numpy as np
from mathutils import Matrix

from ...core.errors import BadInputError
from .. import materials
from ..plans.pictures import PREVIEW, plan_render, plan_slice
from ..props import preview_properties, slice_properties
from .base import JobOperator, field_tool
from .selection import active_first, active_supported, other_selected, supported_selected

PREVIEW_IMAGE = "LipSDF Preview"
#: Share of the object's size added around it on an axis-aligned slice.
MARGIN = 0.15


def _world_box(obj) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: the world-space box around ``obj``'s bounding box."""
    M = np.array(obj.matrix_world, dtype=np.float64)
    corners = np.array([tuple(c) for c in obj.bound_box], dtype=np.float64)
    W = corners @ M[:3, :3].T + M[:3, 3]
    return W.min(axis=0), W.max(axis=0)


def slice_placement(obj, placement: str, cursor, plane_obj=None):
    """Where a slice lies: ``(frame, half_u, half_v)``: ``frame`` is a 4x4 world matrix whose
    X and Y are unit axes of the picture and whose origin is its centre.

    ``X``/``Y``/``Z``: across that axis through ``cursor``, covering ``obj``'s world bounding
    box (and a margin) on the other two axes. ``SELECTED``: ``plane_obj``'s XY plane over its
    local bounding box (scaled by its transform).
    """
    if placement == "SELECTED":
        if plane_obj is None:
            raise BadInputError(
                "select the plane object too (the field's object active): its XY plane is sliced"
            )
        M = np.array(plane_obj.matrix_world, dtype=np.float64)
        box = np.array([tuple(c) for c in plane_obj.bound_box], dtype=np.float64)
        lo, hi = box.min(axis=0), box.max(axis=0)
        centre = M @ np.array([*(0.5 * (lo[:2] + hi[:2])), 0.0, 1.0])
        axes = M[:3, :3]
        su, sv = np.linalg.norm(axes[:, 0]), np.linalg.norm(axes[:, 1])
        if min(su, sv) < 1e-12 or min(hi[0] - lo[0], hi[1] - lo[1]) <= 0:
            raise BadInputError(f"{plane_obj.name} has no area in its XY plane to slice")
        u, v = axes[:, 0] / su, axes[:, 1] / sv
        half_u, half_v = 0.5 * (hi[0] - lo[0]) * su, 0.5 * (hi[1] - lo[1]) * sv
    else:
        lo, hi = _world_box(obj)
        grow = MARGIN * float(np.max(hi - lo)) + 1e-6
        lo, hi = lo - grow, hi + grow
        k = "XYZ".index(placement)
        a, b = [(1, 2), (0, 2), (0, 1)][k]
        u, v = np.eye(3)[a], np.eye(3)[b]
        centre = 0.5 * (lo + hi)
        centre[k] = float(cursor[k])
        half_u, half_v = 0.5 * (hi[a] - lo[a]), 0.5 * (hi[b] - lo[b])
    n = np.cross(u, v)
    frame = np.eye(4)
    frame[:3, 0], frame[:3, 1], frame[:3, 2], frame[:3, 3] = u, v, n, centre[:3]
    return frame, float(half_u), float(half_v)


def _flat(obj) -> bool:
    """A mesh with no depth along its own Z (a plane object)."""
    if obj.type != "MESH" or not len(obj.data.vertices):
        return False
    box = np.array([tuple(c) for c in obj.bound_box])
    extent = box.max(axis=0) - box.min(axis=0)
    return extent[2] <= 1e-9 * max(float(extent.max()), 1e-30)


def picture_size(longer: int, width: float, height: float) -> tuple[int, int]:
    """Pixels ``(w, h)`` with ``longer`` on the longer side and the given shape."""
    if width >= height:
        return int(longer), max(1, round(longer * height / width))
    return max(1, round(longer * width / height)), int(longer)


def camera_params(scene, longer: int) -> dict:
    """The scene camera as the worker's ``render`` takes it (see the protocol)."""
    cam = scene.camera
    if cam is None or cam.type != "CAMERA":
        raise BadInputError("the scene has no active camera: add one (the preview is seen from it)")
    data = cam.data
    r = scene.render
    w_full = r.resolution_x * r.pixel_aspect_x
    h_full = r.resolution_y * r.pixel_aspect_y
    w, h = picture_size(longer, w_full, h_full)
    M = np.array(cam.matrix_world, dtype=np.float64)
    for k in range(3):  # no scale: the rays' lengths are distances
        M[:3, k] /= max(np.linalg.norm(M[:3, k]), 1e-12)
    fit = data.sensor_fit
    horizontal = fit == "HORIZONTAL" or (fit == "AUTO" and w_full >= h_full)
    aspect = w_full / h_full
    params = {"matrix": M.tolist(), "pixels": [w, h], "clip": [data.clip_start, data.clip_end]}
    if data.type == "PERSP":
        sensor = data.sensor_width if fit in ("AUTO", "HORIZONTAL") else data.sensor_height
        half = math.atan(0.5 * sensor / data.lens)
        if not horizontal:  # the sensor spans the height
            half = math.atan(math.tan(half) * aspect)
        params.update(type="persp", fov=2.0 * half)
    elif data.type == "ORTHO":
        width = data.ortho_scale if horizontal else data.ortho_scale * aspect
        params.update(type="ortho", ortho_scale=width)
    else:
        raise BadInputError("the preview needs a perspective or orthographic camera")
    return params


@field_tool("slice_", slice_properties)
class LIPSDF_OT_slice(JobOperator, bpy.types.Operator):
    """New planes through the active object's field: its distances in colour with isolines,
    and the size of its gradient beside it (at most 1 everywhere: the bound holds)"""

    bl_idname = "lipsdf.slice"
    bl_label = "Slice Picture"
    uniform_scale_for = "the distances on the slice"

    @classmethod
    def poll_objects(cls, context) -> bool:
        """A supported active object."""
        if not active_supported(context):
            cls.poll_message_set("Make a mesh, curve or point cloud the active object")
            return False
        return True

    def _roles(self, context) -> tuple[list, object]:
        """``([field object], plane)``: with *Selected Plane*, an active flat mesh (a plane)
        is the placement and the other selected object gives the field; else the active
        object gives the field and the other selected mesh is the plane."""
        active = active_supported(context)
        others = other_selected(context)
        if self.placement == "SELECTED" and active and _flat(active[0]):
            fields = [o for o in supported_selected(context) if o != active[0]]
            if fields:
                return fields[:1], active[0]
        return active, (others[0] if others else None)

    def objects(self, context):
        """The one object whose field is sliced (see ``_roles``)."""
        return self._roles(context)[0]

    def gather(self, context, objs) -> None:
        """Where the slice lies and its pixels (:func:`slice_placement`)."""
        plane = self._roles(context)[1]
        self._frame, hu, hv = slice_placement(
            objs[0], self.placement, context.scene.cursor.location, plane
        )
        self._half = (hu, hv)
        self._pixels = picture_size(self.pixels, hu, hv)

    def plan(self, sources, settings):
        """:func:`~..plans.pictures.plan_slice` on the placed plane."""
        plane = self._frame @ np.diag([self._half[0], self._half[1], 1.0, 1.0])
        return plan_slice(sources[0], settings, plane, self._pixels, self.spacing)

    def build(self, context, outcome, made):
        """``<name>.slice`` and ``<name>.slice.gradient``: planes with packed images."""
        name = self._names[0]
        a = outcome.arrays[name]
        self._info = outcome.info[name]
        hu, hv = self._half
        frame = self._frame.copy()
        for suffix, key, shift in (("slice", "rgba", 0.0), ("slice.gradient", "rgba_gradient", 1)):
            image = materials.image_from_rgba(f"{name}.{suffix}", a[key])
            mat = materials.image_material(f"{name}.{suffix}", image)
            place = frame.copy()
            place[:3, 3] += shift * 2.2 * hu * frame[:3, 0]  # the gradient picture beside it
            obj = materials.new_plane_object(
                context, f"{name}.{suffix}", Matrix(place.tolist()), hu, hv, mat
            )
            made.append(obj)

    def summary(self, outcome, made) -> str:
        """The picture's size, range of distances and largest gradient."""
        i = self._info
        w, h = self._pixels
        return (
            f"LipSDF: slice {w}x{h}: distance {i.get('min', 0):.4g} .. {i.get('max', 0):.4g}, "
            f"largest |∇f| {i.get('gradient_max', 0):.4f} (the bound is 1)"
        )


@field_tool("preview_", preview_properties)
class LIPSDF_OT_preview(JobOperator, bpy.types.Operator):
    """Sphere-trace the selected objects' fields (combined, the active one first) from the
    scene camera into the image "LipSDF Preview": steps of the field's value, never through
    a surface"""

    bl_idname = "lipsdf.preview"
    bl_label = "Sphere-Traced Preview"
    uniform_scale_for = "distances along the rays"

    def objects(self, context):
        """The active object first, then the others (or just the selection)."""
        return active_first(context) or supported_selected(context)

    def gather(self, context, objs) -> None:
        """The scene camera, as the worker's ``render`` takes it."""
        self._camera = camera_params(context.scene, self.size)

    def plan(self, sources, settings):
        """:func:`~..plans.pictures.plan_render` from the camera, fields combined by
        ``operation``."""
        blend = float(self.blend)
        return plan_render(sources, settings, self._camera, self.operation, blend)

    def build(self, context, outcome, made):
        """The image "LipSDF Preview", shown in an open Image Editor."""
        a = outcome.arrays[PREVIEW]
        self._info = outcome.info[PREVIEW]
        self._image = materials.image_from_rgba(PREVIEW_IMAGE, a["rgba"], replace=True)
        screen = getattr(context, "screen", None)
        for area in screen.areas if screen else ():
            if area.type == "IMAGE_EDITOR":
                area.spaces.active.image = self._image
                break

    def summary(self, outcome, made) -> str:
        """The image's size, time and steps a ray."""
        w, h = self._camera["pixels"]
        i = self._info
        return (
            f"LipSDF: {PREVIEW_IMAGE} {w}x{h} in {i.get('seconds', 0):.2f} s "
            f"({i.get('steps_mean', 0):.1f} steps a ray on average)"
        )


classes = (LIPSDF_OT_slice, LIPSDF_OT_preview)
