"""Property groups: the per-scene job settings and the per-object stored field."""

from __future__ import annotations

import bpy
from bpy.props import (
    BoolProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from ..core.training.presets import DEFAULT_PRESET, PRESETS

#: What each preset is for; its sizes are read from the preset itself.
_PRESET_USE = {
    "fast": "About 30 s on a 2-core CPU",
    "balanced": "A few minutes on a CPU",
    "high": "For a GPU",
}
PRESET_ITEMS = tuple(
    (
        name,
        name.title(),
        f"{_PRESET_USE.get(name, name)}: {p.depth} x {p.width} network, {p.resolution}³ extraction",
    )
    for name, p in PRESETS.items()
)
MODE_ITEMS = (
    ("auto", "Auto", "Signed for surfaces and point clouds, unsigned for curves"),
    ("signed", "Signed", "Inside is negative: needs a surface that encloses something"),
    ("unsigned", "Unsigned", "Distance to the geometry itself, for curves and open surfaces"),
)
NORMALS_ITEMS = (
    (
        "auto",
        "Use the Cloud's",
        "Use the normals that came with the cloud (a scanner's, a PLY file's) where it has "
        "them; their signs are still checked. A cloud without normals gets estimated ones",
    ),
    ("estimate", "Estimate", "Ignore the cloud's own normals and estimate them from the points"),
)
NOISE_ITEMS = (
    ("auto", "Auto", "Estimate the points' noise from the cloud"),
    ("given", "Given", "Use the noise level given here, in object units"),
)
OP_ITEMS = (
    ("union", "Union", "Everything inside any of the objects"),
    ("intersection", "Intersection", "Only what is inside all of the objects"),
    ("difference", "Difference", "The active object minus the others"),
)


def settings_properties() -> dict:
    """The training settings shared by the scene group and every operator."""
    return {
        "preset": EnumProperty(name="Preset", items=PRESET_ITEMS, default=DEFAULT_PRESET),
        "mode": EnumProperty(name="Mode", items=MODE_ITEMS, default="auto"),
        "thickness": FloatProperty(
            name="Thickness",
            description="Half-width of an unsigned field's surface, in object units",
            default=0.01,
            min=1e-6,
            soft_max=1.0,
            precision=4,
        ),
        "resolution": IntProperty(
            name="Resolution",
            description="Cells along the longest side of the result; 0 uses the preset's",
            default=0,
            min=0,
            max=2048,
        ),
        "seed": IntProperty(name="Seed", description="Random seed of the training", min=0),
        "detail": BoolProperty(
            name="Input Detail",
            description="Near the input, take the surface from the input's exact distances "
            "(creases, small details, flat faces); off: the field's own smooth surface",
            default=True,
        ),
        "sharp": BoolProperty(
            name="Sharp Edges",
            description="Keep the input's creases and corners sharp (dual contouring); off: "
            "marching cubes, which cuts them by a chamfer one cell wide",
            default=True,
        ),
        "normals": EnumProperty(
            name="Normals",
            description="Point clouds: where the normals that decide inside and outside come from",
            items=NORMALS_ITEMS,
            default="auto",
        ),
        "noise_mode": EnumProperty(
            name="Noise",
            description="Point clouds: how noisy the points are",
            items=NOISE_ITEMS,
            default="auto",
        ),
        "noise": FloatProperty(
            name="Noise Level",
            description="Point clouds: the points' noise (standard deviation), in object units",
            default=0.001,
            min=0.0,
            soft_max=0.1,
            precision=4,
        ),
        "warm_start": BoolProperty(
            name="Warm Start",
            description="Retrain an object edited since training from its previous field: "
            "about a third of the steps, labels kept away from the edit; off: from scratch",
            default=True,
        ),
        "faces": IntProperty(
            name="Target Faces",
            description="Decimate each result to about this many triangles, fewer where it "
            "is flat; 0 keeps every triangle",
            default=0,
            min=0,
            soft_max=1_000_000,
        ),
    }


def offset_properties() -> dict:
    return {
        "distances": StringProperty(
            name="Distances",
            description="Offset distances in object units, separated by commas; negative = inward",
            default="0.05",
        ),
        "exact": BoolProperty(
            name="Exact",
            description="Measure offsets from the remeshed surface (exact). Off: the field's "
            "own level sets, faster and never farther than asked",
            default=True,
        ),
    }


def csg_properties() -> dict:
    return {
        "operation": EnumProperty(name="Operation", items=OP_ITEMS, default="union"),
        "smooth": BoolProperty(name="Smooth", description="Blend the seams with a radius"),
        "blend": FloatProperty(
            name="Blend Radius",
            description="Radius of the smooth blend, in world units",
            default=0.1,
            min=0.0,
            soft_max=1.0,
        ),
    }


AS_ITEMS = (
    ("OBJECT", "New Object", "A copy of the mesh with its vertices on the level set"),
    ("SHAPE_KEY", "Shape Key", "A copy of the mesh with a shape key that moves its vertices"),
)
PLACEMENT_ITEMS = (
    ("X", "X", "A plane across the X axis through the 3D cursor"),
    ("Y", "Y", "A plane across the Y axis through the 3D cursor"),
    ("Z", "Z", "A plane across the Z axis through the 3D cursor"),
    (
        "SELECTED",
        "Selected Plane",
        "A plane object's XY plane, at its size: the active plane with the field's object "
        "selected, or the other selected mesh with the field's object active",
    ),
)


def points_properties() -> dict:
    return {
        "count": IntProperty(
            name="Points",
            description="How many points to place",
            default=5000,
            min=1,
            soft_max=1_000_000,
        ),
        "level": FloatProperty(
            name="Level",
            description="Distance of the level set from the surface, in object units "
            "(0: the surface; negative: inside)",
            default=0.0,
            precision=4,
        ),
    }


def project_properties() -> dict:
    return {
        "level": FloatProperty(
            name="Level",
            description="Distance of the level set from the active object's surface, in world "
            "units (0: onto the surface)",
            default=0.0,
            precision=4,
        ),
        "result": EnumProperty(name="Result", items=AS_ITEMS, default="OBJECT"),
        "iterations": IntProperty(
            name="Steps",
            description="Most steps per vertex; each moves by the field's value, so it never "
            "crosses the level set",
            default=100,
            min=1,
            max=1000,
        ),
    }


def exact_property(what: str) -> dict:
    return {
        "exact": BoolProperty(
            name="Exact",
            description=f"{what} from the remeshed surface's exact distance; off: the field "
            "itself, a lower bound of the distance",
            default=True,
        )
    }


def thickness_properties() -> dict:
    return {
        **exact_property("Measure the walls"),
        "min_wall": FloatProperty(
            name="Minimum Wall",
            description="Walls thinner than this show red, up to twice it yellow to green "
            "(object units); a vertex on a crease reads the largest ball within a quarter of "
            "it, so right-angled edges stay green and knife edges show",
            default=0.02,
            min=0.0,
            precision=4,
        ),
        "show": BoolProperty(
            name="Show in Material",
            description="Give the objects a material that colours the thickness",
            default=True,
        ),
    }


def hollow_properties() -> dict:
    return {
        "wall": FloatProperty(
            name="Wall",
            description="Wall thickness of the hollow shell, in object units",
            default=0.05,
            min=1e-6,
            precision=4,
        )
    }


def slice_properties() -> dict:
    return {
        "placement": EnumProperty(name="Plane", items=PLACEMENT_ITEMS, default="Z"),
        "pixels": IntProperty(
            name="Pixels",
            description="Pixels along the longer side of the picture",
            default=512,
            min=16,
            max=4096,
        ),
        "spacing": FloatProperty(
            name="Isolines",
            description="Distance between isolines, in world units (0: none)",
            default=0.05,
            min=0.0,
            precision=4,
        ),
    }


def preview_properties() -> dict:
    return {
        "operation": EnumProperty(
            name="Operation",
            items=OP_ITEMS,
            default="union",
            description="How the selected objects' fields combine (the active one first)",
        ),
        "blend": FloatProperty(
            name="Blend Radius",
            description="Radius of a smooth blend, in world units (0: sharp)",
            default=0.0,
            min=0.0,
            soft_max=1.0,
        ),
        "size": IntProperty(
            name="Size",
            description="Pixels along the longer side; the shape is the scene's render "
            "resolution's",
            default=512,
            min=16,
            max=4096,
        ),
    }


def grid_properties() -> dict:
    return {
        **exact_property("Grid values"),
        "voxel": FloatProperty(
            name="Voxel Size",
            description="Voxel size in object units (0: 1/200 of the object's longest side)",
            default=0.0,
            min=0.0,
            precision=4,
        ),
        "band": FloatProperty(
            name="Band",
            description="Half-width of the narrow band, in voxels",
            default=3.0,
            min=1.0,
            max=64.0,
        ),
    }


def _tool_settings() -> dict:
    """The scene's copies of the tools' settings, each prefixed by its tool."""
    out = {}
    for prefix, group in (
        ("points_", points_properties),
        ("project_", project_properties),
        ("thickness_", thickness_properties),
        ("hollow_", hollow_properties),
        ("slice_", slice_properties),
        ("preview_", preview_properties),
        ("grid_", grid_properties),
    ):
        out.update({prefix + k: v for k, v in group().items()})
    out["distance_exact"] = exact_property("Distances")["exact"]
    return out


class LIPSDF_PG_settings(bpy.types.PropertyGroup):
    """Settings the sidebar panel hands to the operators (``scene.lipsdf``)."""

    __annotations__ = {
        **settings_properties(),
        **offset_properties(),
        **csg_properties(),
        **_tool_settings(),
    }


class LIPSDF_PG_field(bpy.types.PropertyGroup):
    """A trained field kept with its object (``object.lipsdf``), saved in the .blend."""

    data: StringProperty(name="Field", description="The .lipsdf file, base64", options={"HIDDEN"})
    sha256: StringProperty(options={"HIDDEN"})
    input_hash: StringProperty(options={"HIDDEN"})
    kind: StringProperty(name="Input")
    mode: StringProperty(name="Mode")
    thickness: FloatProperty(name="Thickness")
    preset: StringProperty(name="Preset")
    device: StringProperty(name="Device")
    seconds: FloatProperty(name="Seconds")
    final_loss: FloatProperty(name="Final Loss")
    samples: IntProperty(name="Samples")
    normals: StringProperty(name="Normals", description="Point clouds: auto or estimate")
    noise: FloatProperty(
        name="Noise", description="Point clouds: the noise level given; -1: estimated", default=-1.0
    )
    cloud: StringProperty(
        name="Point Cloud", description="What training did to the cloud's normals and points"
    )
    warm: StringProperty(
        name="Warm Start", description="Whether training started from the previous field"
    )


classes = (LIPSDF_PG_settings, LIPSDF_PG_field)


def register() -> None:
    bpy.types.Scene.lipsdf = PointerProperty(type=LIPSDF_PG_settings)
    bpy.types.Object.lipsdf = PointerProperty(type=LIPSDF_PG_field)


def unregister() -> None:
    del bpy.types.Object.lipsdf
    del bpy.types.Scene.lipsdf
