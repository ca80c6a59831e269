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

PRESET_ITEMS = (
    ("fast", "Fast", "About 30 s on a 2-core CPU: 8 x 64 network, 192³ extraction"),
    ("balanced", "Balanced", "A few minutes on a CPU: 12 x 96 network, 256³ extraction"),
    ("high", "High", "For a GPU: 20 x 128 network, 384³ extraction"),
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
        "preset": EnumProperty(name="Preset", items=PRESET_ITEMS, default="fast"),
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


class LIPSDF_PG_settings(bpy.types.PropertyGroup):
    """Settings the sidebar panel hands to the operators (``scene.lipsdf``)."""

    __annotations__ = {**settings_properties(), **offset_properties(), **csg_properties()}


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
