"""The peers of bench_peers.py, each run in its own process: Blender (the bpy module) and MeshFix.

    python benchmarks/peer_jobs.py JOB IN.npz OUT.npz [--voxel-size S | --target-faces N]
                                                      [--thickness T] [--depth T]
    python benchmarks/peer_jobs.py render LIST.json

Jobs: ``voxel`` (Blender's voxel remesh, the Remesh modifier in Voxel mode, adaptivity 0),
``meshfix`` (pymeshfix's default ``repair``), ``solidify`` (Solidify modifier, offset 0) and
``bevel`` (a cyclic poly curve through the input polyline's vertices in order, bevel depth T,
fill caps; other settings Blender's defaults). ``IN.npz`` holds ``V`` and ``F`` (or ``E`` for a
curve); ``OUT.npz`` gets the result's triangles ``V, F`` (quads split in two). The last line
printed is ``RESULT {json}`` with ``seconds``: the time of the operation alone (modifier
evaluation or repair), without starting Python, importing bpy or moving data.

``render`` draws each mesh of a list with Workbench from one camera and writes one PNG each.
These are benchmark-only dependencies (requirements-bench.txt); nothing in the add-on or the
worker imports this file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np


def _emit(**result) -> None:
    print("RESULT " + json.dumps(result), flush=True)


def _save(path: str, V, F) -> None:
    np.savez(path, V=np.asarray(V, dtype=np.float64), F=np.asarray(F, dtype=np.int64))


# -- Blender ------------------------------------------------------------------------------------
def _fresh_scene():
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy


def _mesh_object(name: str, V, F):
    import bpy

    V = np.asarray(V, dtype=np.float32)
    F = np.asarray(F, dtype=np.int32).reshape(-1, 3)
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(V))
    me.vertices.foreach_set("co", V.ravel())
    me.loops.add(F.size)
    me.loops.foreach_set("vertex_index", F.ravel())
    me.polygons.add(len(F))
    me.polygons.foreach_set("loop_start", np.arange(0, F.size, 3, dtype=np.int32))
    me.update(calc_edges=True)
    me.shade_flat()  # facets show as they are: ripples on flat faces must be visible
    obj = bpy.data.objects.new(name, me)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _evaluated_triangles(obj) -> tuple[float, np.ndarray, np.ndarray]:
    """Evaluate the object's modifiers (timed) and read its triangles."""
    import bpy

    obj.data.update()  # mark it changed so the next update re-evaluates the modifiers
    t0 = time.perf_counter()
    bpy.context.view_layer.update()
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    seconds = time.perf_counter() - t0
    me.calc_loop_triangles()
    V = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", V)
    T = np.empty(len(me.loop_triangles) * 3, np.int32)
    me.loop_triangles.foreach_get("vertices", T)
    ev.to_mesh_clear()
    return seconds, V.reshape(-1, 3).astype(np.float64), T.reshape(-1, 3).astype(np.int64)


def job_voxel(data, out: str, voxel_size: float | None, target_faces: int | None) -> None:
    """Voxel remesh at a given voxel size, or at the size whose triangle count is nearest
    ``target_faces`` (up to 6 tries; the faces scale as 1 / size^2)."""
    bpy = _fresh_scene()
    V, F = data["V"], data["F"]
    obj = _mesh_object("input", V, F)
    mod = obj.modifiers.new("remesh", "REMESH")
    mod.mode = "VOXEL"
    mod.adaptivity = 0.0
    longest = float((V.max(axis=0) - V.min(axis=0)).max())
    size = voxel_size or longest / 256
    best = None
    for _ in range(1 if target_faces is None else 6):
        mod.voxel_size = size
        seconds, Vo, Fo = _evaluated_triangles(obj)
        if best is None or abs(len(Fo) - (target_faces or 0)) < abs(
            len(best[2]) - (target_faces or 0)
        ):
            best = (seconds, Vo, Fo, size)
        if target_faces is None or abs(len(Fo) / target_faces - 1) < 0.05 or len(Fo) == 0:
            break
        size *= math.sqrt(len(Fo) / target_faces)
    seconds, Vo, Fo, size = best
    _save(out, Vo, Fo)
    _emit(
        seconds=seconds,
        voxel_size=size,
        voxels_longest_side=longest / size,
        bpy=bpy.app.version_string,
    )


def job_solidify(data, out: str, thickness: float) -> None:
    bpy = _fresh_scene()
    obj = _mesh_object("input", data["V"], data["F"])
    mod = obj.modifiers.new("solidify", "SOLIDIFY")
    mod.thickness = thickness
    mod.offset = 0.0
    seconds, Vo, Fo = _evaluated_triangles(obj)
    _save(out, Vo, Fo)
    _emit(seconds=seconds, bpy=bpy.app.version_string)


def _curve_object(name: str, V, depth: float):
    import bpy

    cu = bpy.data.curves.new(name, "CURVE")
    cu.dimensions = "3D"
    sp = cu.splines.new("POLY")
    sp.points.add(len(V) - 1)
    co = np.column_stack([np.asarray(V, dtype=np.float32), np.ones(len(V), np.float32)])
    sp.points.foreach_set("co", co.ravel())
    sp.use_cyclic_u = True
    cu.bevel_depth = depth
    cu.use_fill_caps = True
    obj = bpy.data.objects.new(name, cu)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def job_bevel(data, out: str, depth: float) -> None:
    bpy = _fresh_scene()
    obj = _curve_object("input", data["V"], depth)
    t0 = time.perf_counter()
    bpy.context.view_layer.update()
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    seconds = time.perf_counter() - t0
    me.calc_loop_triangles()
    Vo = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", Vo)
    T = np.empty(len(me.loop_triangles) * 3, np.int32)
    me.loop_triangles.foreach_get("vertices", T)
    _save(out, Vo.reshape(-1, 3), T.reshape(-1, 3))
    _emit(seconds=seconds, bpy=bpy.app.version_string)


# -- MeshFix ------------------------------------------------------------------------------------
def job_meshfix(data, out: str) -> None:
    import pymeshfix

    fix = pymeshfix.MeshFix(np.asarray(data["V"], np.float64), np.asarray(data["F"], np.int32))
    t0 = time.perf_counter()
    fix.repair()
    seconds = time.perf_counter() - t0
    _save(out, fix.points, fix.faces)
    _emit(seconds=seconds, pymeshfix=pymeshfix.__version__)


# -- renders ------------------------------------------------------------------------------------
def job_render(spec: dict) -> None:
    """Render each of ``spec["items"]`` (npz paths; ``E`` arrays drawn as thin tubes) alone, from
    one camera framed on the first item, to ``spec["pngs"]``; ``spec["y_up"]``: the items are
    y-up (OBJ files) and are turned z-up as Blender's importer would."""
    bpy = _fresh_scene()
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "SINGLE"
    scene.display.shading.show_cavity = True
    w, h = spec["size"]
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.world = bpy.data.worlds.new("background")
    scene.world.color = (0.85, 0.85, 0.85)

    def positions(data):
        V = np.asarray(data["V"], dtype=np.float64)
        # OBJ files are y-up; Blender's OBJ importer turns (x, y, z) into (x, -z, y)
        return np.column_stack([V[:, 0], -V[:, 2], V[:, 1]]) if spec.get("y_up") else V

    first = positions(np.load(spec["items"][0]))
    lo, hi = first.min(axis=0), first.max(axis=0)
    centre, diag = (lo + hi) / 2, float(np.linalg.norm(hi - lo))
    cam_data = bpy.data.cameras.new("camera")
    cam_data.type = "ORTHO"
    cam_data.ortho_scale = 0.85 * diag
    cam = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    view = np.asarray(spec.get("view") or (0.9, -1.3, 0.8), dtype=np.float64)
    view /= np.linalg.norm(view)
    cam.location = tuple(centre + 3.0 * diag * view)
    from mathutils import Vector

    cam.rotation_euler = (-Vector(tuple(view))).to_track_quat("-Z", "Y").to_euler()
    cam_data.clip_end = 10.0 * diag

    for i, (path, png) in enumerate(zip(spec["items"], spec["pngs"], strict=True)):
        data = np.load(path)
        if "E" in data:
            obj = _curve_object(f"item{i}", positions(data), 0.004 * diag)
        else:
            obj = _mesh_object(f"item{i}", positions(data), data["F"])
        scene.render.filepath = png
        bpy.ops.render.render(write_still=True)
        bpy.data.objects.remove(obj)
    _emit(seconds=0.0, bpy=bpy.app.version_string)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=["voxel", "meshfix", "solidify", "bevel", "render"])
    p.add_argument("input", help="IN.npz, or the render job's JSON list")
    p.add_argument("output", nargs="?")
    p.add_argument("--voxel-size", type=float)
    p.add_argument("--target-faces", type=int)
    p.add_argument("--thickness", type=float)
    p.add_argument("--depth", type=float)
    args = p.parse_args(argv)
    if args.job == "render":
        with open(args.input) as fh:
            job_render(json.load(fh))
        return 0
    data = dict(np.load(args.input))
    if args.job == "voxel":
        job_voxel(data, args.output, args.voxel_size, args.target_faces)
    elif args.job == "meshfix":
        job_meshfix(data, args.output)
    elif args.job == "solidify":
        job_solidify(data, args.output, args.thickness)
    else:
        job_bevel(data, args.output, args.depth)
    return 0


if __name__ == "__main__":
    sys.exit(main())
