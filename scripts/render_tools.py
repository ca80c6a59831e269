"""A picture of each field tool, made headless by the add-on itself (the README's pictures).

    BLENDER_USER_RESOURCES=/tmp/user LIPSDF_WORKER_PYTHON=.venv/bin/python \\
        .venv/bin/python scripts/render_tools.py --zip dist/lipsdf_blender-0.1.0.zip \\
        --out docs/images/tools

Installs the extension zip, imports spot and fandisk from ``../shared/meshes``, runs every
field tool through :mod:`lipsdf_blender.api` (the worker trains the fields) and renders one
Workbench picture per tool, the input beside the result. Float attributes (distances,
thickness) are shown through colour attributes, since the Workbench draws only those. Prints
the seconds each tool call took (training included on the first call of each object).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector

MESHES = Path(__file__).resolve().parents[1].parent / "shared" / "meshes"


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    p = argparse.ArgumentParser(description="pictures of the LipSDF field tools")
    p.add_argument("--zip", required=True)
    p.add_argument("--out", default="docs/images/tools")
    p.add_argument("--size", default="720x420")
    p.add_argument("--preset", default="fast")
    return p.parse_args(argv)


def install(zip_path: str) -> None:
    if not os.environ.get("BLENDER_USER_RESOURCES"):
        sys.exit("render_tools: set BLENDER_USER_RESOURCES to a scratch folder")
    ok = bpy.ops.extensions.package_install_files(
        filepath=str(Path(zip_path).resolve()), repo="user_default", enable_on_install=True
    )
    if ok != {"FINISHED"}:
        sys.exit(f"render_tools: installing {zip_path} failed")


def load(name: str, location=(0, 0, 0), rotation=(math.pi / 2, 0, 0)):
    """A shared mesh by name (Y-up, so turned upright)."""
    return load_file(MESHES / f"{name}.obj", name, location, rotation)


def load_file(path: Path, name: str, location=(0, 0, 0), rotation=(math.pi / 2, 0, 0)):
    bpy.ops.wm.obj_import(filepath=str(path))
    obj = bpy.context.selected_objects[0]
    obj.name = name
    obj.location, obj.rotation_euler = location, rotation
    bpy.context.view_layer.update()
    return obj


def ramp_colours(values, lo, hi, stops):
    x = np.clip((np.asarray(values) - lo) / max(hi - lo, 1e-12), 0, 1)
    pos = np.array([p for p, _ in stops])
    cols = np.array([c for _, c in stops])
    return np.stack([np.interp(x, pos, cols[:, k]) for k in range(4)], axis=1)


DIVERGING = (
    (0.0, (0.1, 0.25, 0.75, 1)),
    (0.5, (0.95, 0.95, 0.95, 1)),
    (1.0, (0.85, 0.4, 0.1, 1)),
)


def colour_attribute(obj, name, rgba):
    me = obj.data
    attr = me.color_attributes.get(name) or me.color_attributes.new(name, "FLOAT_COLOR", "POINT")
    attr.data.foreach_set("color", np.ascontiguousarray(rgba, dtype=np.float32).ravel())
    me.color_attributes.active_color = attr


def show_only(objs):
    keep = {o.name for o in objs}
    for o in bpy.context.scene.objects:
        o.hide_render = o.name not in keep and o.type not in ("CAMERA", "LIGHT")


def frame(objs, direction=(0.55, -1.0, 0.45), margin=1.15):
    """Point the camera at the objects from ``direction``, all of them in view."""
    bpy.context.view_layer.update()  # matrices of objects just moved
    pts = []
    for o in objs:
        pts += [o.matrix_world @ Vector(c) for c in o.bound_box]
    P = np.array([tuple(p) for p in pts])
    centre = Vector(tuple(0.5 * (P.min(0) + P.max(0))))
    radius = 0.5 * float(np.linalg.norm(P.max(0) - P.min(0)))
    cam = bpy.context.scene.camera
    d = Vector(direction).normalized()
    cam.data.lens = 50
    half = math.atan(0.5 * cam.data.sensor_width / cam.data.lens)
    cam.location = centre + d * (margin * radius / math.sin(half * 0.62))
    cam.rotation_euler = (centre - cam.location).to_track_quat("-Z", "Y").to_euler()
    cam.data.clip_end = 1000


def render(path: Path, objs, colour="SINGLE", direction=(0.55, -1.0, 0.45)):
    scene = bpy.context.scene
    show_only(objs)
    frame(objs, direction)
    shading = scene.display.shading
    shading.light, shading.color_type = "STUDIO", colour
    shading.single_color = (0.75, 0.75, 0.72)
    shading.show_cavity = colour == "SINGLE"
    scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    print(f"render_tools: wrote {path}")


def timed(what: str, fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    print(f"render_tools: {what}: {time.perf_counter() - t0:.1f} s")
    return out


def main() -> None:
    args = parse_args()
    install(args.zip)
    from lipsdf_blender import api  # after the install, the add-on's own copy

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for o in list(bpy.data.objects):
        bpy.data.objects.remove(o)
    scene = bpy.context.scene
    w, h = (int(v) for v in args.size.split("x"))
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.render.film_transparent = False
    scene.display.render_aa = "8"
    bpy.ops.object.camera_add()
    scene.camera = bpy.context.active_object
    kw = {"preset": args.preset}

    spot = load("spot")
    dx = Vector((1.4, 0, 0))  # each result one object-width to the right of its input

    # Surface points: 6000 evenly spread points with normals.
    pts = timed("surface points", api.surface_points, spot, 6000, **kw)
    pts.location += dx
    if pts.type == "POINTCLOUD":
        radius = pts.data.attributes.get("radius") or pts.data.attributes.new(
            "radius", "FLOAT", "POINT"
        )
        radius.data.foreach_set("value", np.full(len(pts.data.points), 0.006, np.float32))
    render(out / "points.png", [spot, pts])

    # Projection: a UV sphere around spot shrunk onto its surface.
    bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32, radius=0.75)
    ball = bpy.context.active_object
    ball.location = spot.matrix_world @ Vector((0, 0, 0)) + Vector((0.0, 0.0, 0.05))
    bpy.context.view_layer.update()
    wrapped = timed("project", api.project, [ball], spot, **kw)[0]
    wrapped.location += 2 * dx
    render(out / "project.png", [ball, wrapped], direction=(0.3, -1.0, 0.3))

    # Distance attributes: a grid below and behind spot, coloured by its distance to spot.
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=120, y_subdivisions=120, size=2.4)
    floor = bpy.context.active_object
    floor.location = (0.0, 0.0, -0.3)
    bpy.context.view_layer.update()
    timed("distance attributes", api.distance_attributes, [floor], spot, **kw)
    a = floor.data.attributes["lipsdf_distance"]
    d = np.empty(len(a.data), np.float32)
    a.data.foreach_get("value", d)
    stripes = (np.floor(d / 0.05) % 2)[:, None] * 0.15
    colour_attribute(floor, "shown", ramp_colours(d, 0.0, 0.6, DIVERGING) - stripes * [1, 1, 1, 0])
    render(out / "distance.png", [spot, floor], colour="VERTEX", direction=(0.5, -1.0, 0.9))

    # Wall thickness of fandisk (thin fins), red below 2 % of its size.
    fandisk = load("fandisk", location=(0, 0, 0), rotation=(0, 0, 0))
    size = max(fandisk.dimensions)
    timed("wall thickness", api.thickness, fandisk, min_wall=0.05 * size, **kw)
    fandisk.data.color_attributes.active_color = fandisk.data.color_attributes[
        "lipsdf_thickness_color"
    ]
    render(out / "thickness.png", [fandisk], colour="VERTEX", direction=(0.8, -1.0, 0.6))

    # Hollow: spot with 3 % walls, cut open by a boolean to show them.
    shell = timed("hollow", api.hollow, spot, wall=0.03, **kw)
    shell.location += dx
    bpy.ops.mesh.primitive_cube_add(size=4.0)
    cutter = bpy.context.active_object  # takes away everything in front of the middle
    bpy.context.view_layer.update()
    cutter.location = shell.matrix_world @ Vector((0, 0, 0)) + Vector((0, -2.0, 0))
    cutter.hide_render = True
    mod = shell.modifiers.new("cut", "BOOLEAN")
    mod.operation, mod.object, mod.solver = "DIFFERENCE", cutter, "EXACT"
    render(out / "hollow.png", [spot, shell], direction=(0.4, -1.0, 0.5))

    # Slice through spot at the 3D cursor (its middle), distances and |grad f|.
    scene.cursor.location = spot.matrix_world @ Vector((0, 0, 0))
    planes = timed("slice", api.slice_picture, spot, "Y", pixels=512, spacing=0.05, **kw)
    render(out / "slice.png", planes, colour="TEXTURE", direction=(0.35, -1.0, 0.25))

    # Sphere-traced preview: spot smoothly united with a ball on its back, from the camera.
    bpy.ops.mesh.primitive_ico_sphere_add(subdivisions=4, radius=0.22)
    bump = bpy.context.active_object
    top = np.array([tuple(spot.matrix_world @ Vector(c)) for c in spot.bound_box])
    bump.location = (*(0.5 * (top.min(0) + top.max(0)))[:2], top[:, 2].max() - 0.12)
    frame([spot, bump], direction=(0.6, -1.0, 0.4))
    image = timed("preview", api.preview, [spot, bump], blend=0.08, size=max(w, h), **kw)
    image.filepath_raw = str(out / "preview.png")
    image.file_format = "PNG"
    image.save()

    # Hand-over: spot's level set as a Volume; Blender's SDF nodes offset it and mesh it.
    volume = timed("sdf volume", api.sdf_volume, spot, voxel=0.006, **kw)
    tree = bpy.data.node_groups.new("offset", "GeometryNodeTree")
    tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    info = tree.nodes.new("GeometryNodeObjectInfo")
    info.inputs["Object"].default_value = volume
    get = tree.nodes.new("GeometryNodeGetNamedGrid")
    get.data_type = "FLOAT"
    get.inputs["Name"].default_value = "distance"
    offset = tree.nodes.new("GeometryNodeSDFGridOffset")
    offset.inputs["Distance"].default_value = 0.03
    mesh = tree.nodes.new("GeometryNodeGridToMesh")
    mesh.inputs["Threshold"].default_value = 0.0  # the zero level set (default 0.1)
    tree.links.new(info.outputs["Geometry"], get.inputs["Volume"])
    tree.links.new(get.outputs["Grid"], offset.inputs["Grid"])
    tree.links.new(offset.outputs["Grid"], mesh.inputs["Grid"])
    tree.links.new(mesh.outputs["Mesh"], tree.nodes.new("NodeGroupOutput").inputs[0])
    holder = bpy.data.objects.new("offset by Blender", bpy.data.meshes.new("offset"))
    scene.collection.objects.link(holder)
    holder.matrix_world = volume.matrix_world.copy()
    holder.location += dx
    holder.modifiers.new("sdf", "NODES").node_group = tree
    render(out / "sdf_volume.png", [spot, holder], direction=(0.4, -1.0, 0.4))
    overview(out)


TITLES = {
    "points": "Surface Points",
    "project": "Project onto Field",
    "distance": "Distance Attributes",
    "thickness": "Wall Thickness",
    "hollow": "Hollow (cut open)",
    "slice": "Slice Picture, |grad f|",
    "preview": "Sphere-Traced Preview",
    "sdf_volume": "SDF Volume, Blender's offset",
}


def overview(out: Path) -> None:
    """The eight pictures in two rows under their titles: ``overview.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(14, 4.9), dpi=100)
    for ax, (key, title) in zip(axes.ravel(), TITLES.items(), strict=True):
        img = mpimg.imread(out / f"{key}.png")
        if img.shape[-1] == 4:  # the preview's background is transparent: show it grey
            img = img[..., :3] * img[..., 3:] + 0.24 * (1 - img[..., 3:])
        ax.imshow(img)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.94, wspace=0.02, hspace=0.12)
    save_figure(fig, out / "overview.png")


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure as a small PNG (192 colours: the pictures are flat-shaded)."""
    import matplotlib.pyplot as plt
    from PIL import Image  # matplotlib's own dependency

    fig.savefig(path, dpi=100)
    plt.close(fig)
    Image.open(path).convert("RGB").quantize(colors=192).save(path, optimize=True)
    print(f"{Path(sys.argv[0]).stem}: wrote {path}")


if __name__ == "__main__":
    main()
