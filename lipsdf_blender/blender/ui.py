"""The sidebar panel ("LipSDF" tab of the 3D viewport) and the Object › LipSDF menu."""

from __future__ import annotations

import bpy

from . import convert, fields, operators

TOOLS = (
    ("lipsdf.surface_points", "POINTCLOUD_DATA"),
    ("lipsdf.project", "MOD_SHRINKWRAP"),
    ("lipsdf.distance_attributes", "DRIVER_DISTANCE"),
    ("lipsdf.thickness", "MOD_THICKNESS"),
    ("lipsdf.hollow", "MOD_SOLIDIFY"),
    ("lipsdf.slice", "MESH_PLANE"),
    ("lipsdf.preview", "RENDER_STILL"),
    ("lipsdf.sdf_volume", "VOLUME_DATA"),
)


class LIPSDF_MT_object(bpy.types.Menu):
    """Object › LipSDF: every operator, so F3 finds them too"""

    bl_idname = "LIPSDF_MT_object"
    bl_label = "LipSDF"

    def draw(self, context):
        layout = self.layout
        layout.operator("lipsdf.train", icon="MOD_REMESH")
        layout.operator("lipsdf.remesh", icon="MESH_ICOSPHERE")
        layout.operator("lipsdf.offset", icon="MOD_SOLIDIFY")
        layout.operator_menu_enum("lipsdf.csg", "operation", icon="MOD_BOOLEAN")
        layout.separator()
        for idname, icon in TOOLS:
            layout.operator(idname, icon=icon)
        layout.separator()
        layout.operator("lipsdf.cancel", icon="CANCEL")


def _menu_entry(self, context):
    self.layout.menu(LIPSDF_MT_object.bl_idname)


def _field_box(layout, context) -> None:
    obj = context.active_object
    box = layout.box()
    if obj is None or not convert.supported(obj):
        box.label(text="No mesh, curve or point cloud active", icon="INFO")
        return
    state = fields.cached_state(obj)
    if state == fields.NONE:
        box.label(text=f"{obj.name}: no field yet", icon="OBJECT_DATA")
        return
    if state == fields.CHECKING:
        box.label(text=f"{obj.name}: checking the field...", icon="TIME")
        return
    pg = obj.lipsdf
    if state == fields.STALE:
        row = box.row()
        row.alert = True
        row.label(text=f"{obj.name}: field is stale (edited since training)", icon="ERROR")
    else:
        box.label(text=f"{obj.name}: field trained", icon="CHECKMARK")
    col = box.column(align=True)
    col.label(text=f"{pg.preset} · {pg.mode} · {pg.kind} · {pg.samples:,} samples")
    col.label(text=f"loss {pg.final_loss:.4g} · {pg.device} · {pg.seconds:.1f} s")
    if pg.warm:
        col.label(text=pg.warm)
    if pg.cloud:
        # One line per part: "normals: ...; 3 outliers dropped; noise ...; labelling ..."
        for part in pg.cloud.split("; "):
            col.label(text=part)


def _job_box(layout, job) -> None:
    box = layout.box()
    status = job.status
    box.progress(factor=status.fraction, type="BAR", text=status.label)
    col = box.column(align=True)
    if status.total:
        col.label(text=f"{status.phase} {status.step}/{status.total}")
    if status.loss is not None:
        col.label(text=f"loss {status.loss:.4g}")
    if status.eta is not None:
        col.label(text=f"ETA {status.eta:.0f} s · {status.device}")
    box.operator("lipsdf.cancel", icon="CANCEL", text="Cancel")


def _selected_or_active(context) -> list:
    objs = list(getattr(context, "selected_objects", None) or ())
    active = context.active_object
    return objs if objs or active is None else [active]


def _cloud_box(layout, s) -> None:
    box = layout.box()
    box.label(text="Point Cloud", icon="OUTLINER_OB_POINTCLOUD")
    col = box.column(align=True)
    col.label(text="Normals")
    col.row(align=True).prop(s, "normals", expand=True)
    col.label(text="Noise")
    row = col.row(align=True)
    row.prop(s, "noise_mode", expand=True)
    sub = row.row(align=True)
    sub.active = s.noise_mode == "given"
    sub.prop(s, "noise", text="")


def _pass_settings(op, s, *extra) -> None:
    for key in (*operators.SETTINGS_KEYS, *extra):
        setattr(op, key, getattr(s, key))


class LIPSDF_PT_main(bpy.types.Panel):
    """The active object's field, the operators and their settings"""

    bl_idname = "LIPSDF_PT_main"
    bl_label = "LipSDF"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "LipSDF"

    def draw(self, context):
        layout = self.layout
        s = context.scene.lipsdf
        job = operators.current_job()
        if job is not None and not job.done:
            _job_box(layout, job)
        _field_box(layout, context)

        col = layout.column(align=True)
        col.prop(s, "preset")
        col.prop(s, "mode")
        if s.mode == "unsigned" or (
            s.mode == "auto" and getattr(context.active_object, "type", "") in ("CURVE", "CURVES")
        ):
            col.prop(s, "thickness")
        col.prop(s, "resolution")
        col.prop(s, "faces")
        row = col.row(align=True)
        row.prop(s, "detail")
        row.prop(s, "sharp")
        col.prop(s, "warm_start")
        if any(convert.is_cloud(o) for o in _selected_or_active(context)):
            _cloud_box(layout, s)

        row = layout.row(align=True)
        _pass_settings(row.operator("lipsdf.train", icon="MOD_REMESH", text="Train"), s)
        _pass_settings(row.operator("lipsdf.remesh", icon="MESH_ICOSPHERE", text="Remesh"), s)

        box = layout.box()
        box.prop(s, "distances")
        box.prop(s, "exact")
        op = box.operator("lipsdf.offset", icon="MOD_SOLIDIFY")
        _pass_settings(op, s, "distances", "exact")

        box = layout.box()
        box.prop(s, "operation", expand=True)
        row = box.row(align=True)
        row.prop(s, "smooth")
        sub = row.row(align=True)
        sub.active = s.smooth
        sub.prop(s, "blend")
        op = box.operator("lipsdf.csg", icon="MOD_BOOLEAN")
        _pass_settings(op, s, "operation", "smooth", "blend")


def _tool(layout, s, idname: str, icon: str, prefix: str, keys, text=None):
    """One tool's settings (the scene's ``prefix + key``) and its button."""
    box = layout.box()
    col = box.column(align=True)
    for key in keys:
        col.prop(s, prefix + key)
    op = box.operator(idname, icon=icon, text=text) if text else box.operator(idname, icon=icon)
    _pass_settings(op, s)
    for key in keys:
        setattr(op, key, getattr(s, prefix + key))


class LIPSDF_PT_tools(bpy.types.Panel):
    """The field tools: queries, printing checks, pictures and the hand-over to SDF grids"""

    bl_idname = "LIPSDF_PT_tools"
    bl_label = "Field Tools"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "LipSDF"
    bl_parent_id = "LIPSDF_PT_main"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        s = context.scene.lipsdf
        icons = dict(TOOLS)
        col = layout.column(align=True)
        col.label(text="Active: the field · others: the targets", icon="INFO")
        _tool(layout, s, "lipsdf.surface_points", icons["lipsdf.surface_points"], "points_",
              ("count", "level"))  # fmt: skip
        _tool(layout, s, "lipsdf.project", icons["lipsdf.project"], "project_",
              ("level", "result", "iterations"))  # fmt: skip
        _tool(layout, s, "lipsdf.distance_attributes", icons["lipsdf.distance_attributes"],
              "distance_", ("exact",))  # fmt: skip
        _tool(layout, s, "lipsdf.thickness", icons["lipsdf.thickness"], "thickness_",
              ("min_wall", "exact", "show"))  # fmt: skip
        _tool(layout, s, "lipsdf.hollow", icons["lipsdf.hollow"], "hollow_", ("wall",))
        _tool(layout, s, "lipsdf.slice", icons["lipsdf.slice"], "slice_",
              ("placement", "pixels", "spacing"))  # fmt: skip
        _tool(layout, s, "lipsdf.preview", icons["lipsdf.preview"], "preview_",
              ("operation", "blend", "size"))  # fmt: skip
        _tool(layout, s, "lipsdf.sdf_volume", icons["lipsdf.sdf_volume"], "grid_",
              ("voxel", "band", "exact"))  # fmt: skip


classes = (LIPSDF_MT_object, LIPSDF_PT_main, LIPSDF_PT_tools)


def register() -> None:
    bpy.types.VIEW3D_MT_object.append(_menu_entry)


def unregister() -> None:
    bpy.types.VIEW3D_MT_object.remove(_menu_entry)
