"""The add-on end to end in headless Blender: remesh, offset and combine, then render.

    python scripts/demo_blender.py --zip dist/lipsdf_blender-0.1.0.zip --out demo_out
    blender -b -P scripts/demo_blender.py -- --zip dist/lipsdf_blender-0.1.0.zip --out demo_out

With the ``bpy`` module (``make demo``) or a real Blender 4.2+. It installs the extension zip
into a temporary user folder, builds a scene of three sources (Suzanne, a torus, a cube), runs
the add-on's operators through its scripting API (so the worker trains on the best device it
finds), saves ``demo.blend`` and renders ``demo.png`` with Cycles on the CPU: sources on the
back row, results in front of them. The worker's Python is ``LIPSDF_WORKER_PYTHON`` (``make
demo`` sets it to the project's venv).
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

BACK_Y, FRONT_Y = 3.0, -1.8
FRONT_X = (-5.0, -1.6, 1.9, 5.2)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser(description="LipSDF demo in headless Blender")
    parser.add_argument("--zip", required=True, help="the built extension zip")
    parser.add_argument("--out", default="demo_out")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--samples", type=int, default=24, help="Cycles samples")
    parser.add_argument("--size", default="1280x640", help="image size, WxH")
    return parser.parse_args(argv)


def install(zip_path: str) -> None:
    if not os.environ.get("BLENDER_USER_RESOURCES"):
        sys.exit("demo: set BLENDER_USER_RESOURCES to a scratch folder (make demo does)")
    result = bpy.ops.extensions.package_install_files(
        filepath=str(Path(zip_path).resolve()), repo="user_default", enable_on_install=True
    )
    if result != {"FINISHED"}:
        sys.exit(f"demo: installing {zip_path} failed")


def material(name: str, rgba, roughness=0.45, alpha=1.0):
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:  # before 5.0 (5.0+: always nodes, use_nodes deprecated)
        mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = rgba
    bsdf.inputs["Roughness"].default_value = roughness
    bsdf.inputs["Alpha"].default_value = alpha
    return mat


def shade(obj, mat) -> None:
    obj.data.materials.clear()
    obj.data.materials.append(mat)


def label(text: str, x: float, y: float) -> None:
    curve = bpy.data.curves.new(f"label {text}", "FONT")
    curve.body = text
    curve.size = 0.36
    curve.align_x = "CENTER"
    obj = bpy.data.objects.new(f"label {text}", curve)
    obj.location = (x, y, 0.02)
    bpy.context.scene.collection.objects.link(obj)
    shade(obj, bpy.data.materials["Label"])


def build_scene():
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    material("Label", (0.05, 0.05, 0.05, 1))
    bpy.ops.mesh.primitive_monkey_add(location=(-4.0, 3.0, 1.0), rotation=(0, 0, math.radians(20)))
    monkey = bpy.context.active_object
    shade(monkey, material("Monkey", (0.85, 0.45, 0.2, 1)))
    bpy.ops.mesh.primitive_torus_add(location=(0.0, 3.0, 1.0), major_radius=0.8, minor_radius=0.3)
    torus = bpy.context.active_object
    torus.rotation_euler = (math.radians(60), 0, 0)
    shade(torus, material("Torus", (0.2, 0.5, 0.85, 1)))
    bpy.ops.mesh.primitive_cube_add(size=1.4, location=(4.0, 3.0, 1.0))
    cube = bpy.context.active_object
    cube.rotation_euler = (0, 0, math.radians(30))
    shade(cube, material("Cube", (0.3, 0.7, 0.35, 1)))
    return monkey, torus, cube


def run_operators(monkey, torus, cube, preset: str) -> list:
    from lipsdf_blender import api  # published by the add-on when it registers

    t = time.monotonic()
    results = []
    remesh = api.remesh(monkey, preset=preset)
    results.append((remesh, "remesh"))
    shell, inner = api.offset(torus, [0.12, -0.12], preset=preset)
    shade(shell, material("Shell", (0.2, 0.5, 0.85, 1), alpha=0.35))
    results.append(([shell, inner], "offsets ±0.12"))
    bpy.ops.mesh.primitive_uv_sphere_add(radius=0.75, location=(4.6, 3.0, 1.5))
    ball = bpy.context.active_object
    shade(ball, material("Ball", (0.8, 0.8, 0.25, 1)))
    blend = api.csg([cube, ball], "union", blend=0.25, preset=preset)
    cut = api.csg([cube, ball], "difference", preset=preset)
    results.append((blend, "smooth union"))
    results.append((cut, "difference"))
    print(f"demo: operators took {time.monotonic() - t:.1f} s", flush=True)
    return results


def world_center(objs):
    """The centre of the world-space bounding box of some mesh objects."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for obj in objs:
        me = obj.data
        co = np.empty(len(me.vertices) * 3, np.float32)
        me.vertices.foreach_get("co", co)
        M = np.array(obj.matrix_world)
        V = co.reshape(-1, 3) @ M[:3, :3].T + M[:3, 3]
        lo, hi = np.minimum(lo, V.min(0)), np.maximum(hi, V.max(0))
    return (lo + hi) / 2


def arrange(results) -> None:
    """Move each group of results to the front row, one column each, with a label."""
    for i, (objs, text) in enumerate(results):
        objs = objs if isinstance(objs, list) else [objs]
        x = FRONT_X[i]
        shift = np.array([x, FRONT_Y, 0.0]) - world_center(objs) * [1, 1, 0]
        for obj in objs:
            obj.location = tuple(np.array(obj.location) + shift)
        label(text, x, FRONT_Y - 1.9)


def stage_and_render(out: Path, samples: int, size: str) -> Path:
    scene = bpy.context.scene
    bpy.ops.mesh.primitive_plane_add(size=40, location=(0, 0, -0.05))
    shade(bpy.context.active_object, material("Floor", (0.9, 0.9, 0.9, 1), roughness=0.8))
    light = bpy.data.lights.new("Sun", "SUN")
    light.energy = 3.0
    light.angle = math.radians(8)
    sun = bpy.data.objects.new("Sun", light)
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)
    cam_data = bpy.data.cameras.new("Camera")
    cam_data.lens = 32
    cam = bpy.data.objects.new("Camera", cam_data)
    cam.location = (0.2, -12.8, 8.6)
    cam.rotation_euler = (math.radians(57), 0, 0)
    scene.collection.objects.link(cam)
    scene.camera = cam
    world = bpy.data.worlds.new("World")
    if world.node_tree is None:  # before 5.0
        world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.8, 0.85, 0.9, 1)
    world.node_tree.nodes["Background"].inputs["Strength"].default_value = 0.6
    scene.world = world
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    w, h = (int(v) for v in size.split("x"))
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    png = out / "demo.png"
    scene.render.filepath = str(png)
    t = time.monotonic()
    bpy.ops.render.render(write_still=True)
    print(f"demo: rendered {png} in {time.monotonic() - t:.1f} s", flush=True)
    return png


def main() -> None:
    args = parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    install(args.zip)
    monkey, torus, cube = build_scene()
    results = run_operators(monkey, torus, cube, args.preset)
    arrange(results)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "demo.blend"))
    print(f"demo: saved {out / 'demo.blend'}", flush=True)
    stage_and_render(out, args.samples, args.size)


if __name__ == "__main__":
    main()
