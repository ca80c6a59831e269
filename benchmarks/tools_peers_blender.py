"""Blender's own tools as peers of the field tools (run by bench_tools.py in its own process).

    python benchmarks/tools_peers_blender.py --mesh ../shared/meshes/spot.obj --wall 0.02 \\
        --voxel 0.005 --out /tmp/peers

- Hollowing: the Solidify modifier (thickness ``-wall``, even thickness, rim filled off: the
  inner shell stays a separate closed surface), applied through the depsgraph. Its mesh goes
  to ``--out`` so the benchmark measures it with the same metric code as ours.
- Grid: Blender 5.0's Mesh to SDF Grid node (voxel size ``--voxel``, band 3) meshed again by
  Grid to Mesh, timed as one evaluation.

Prints ``RESULT {"peers": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import bpy
import numpy as np


def mesh_arrays(me):
    V = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", V)
    me.calc_loop_triangles()
    T = np.empty(len(me.loop_triangles) * 3, np.int32)
    me.loop_triangles.foreach_get("vertices", T)
    return V.reshape(-1, 3).astype(np.float64), T.reshape(-1, 3).astype(np.int64)


def evaluated(obj):
    t0 = time.perf_counter()
    dg = bpy.context.evaluated_depsgraph_get()
    ev = obj.evaluated_get(dg)
    me = ev.to_mesh()
    V, F = mesh_arrays(me)
    seconds = time.perf_counter() - t0
    ev.to_mesh_clear()
    return V, F, seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mesh", required=True)
    p.add_argument("--wall", type=float, required=True)
    p.add_argument("--voxel", type=float, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    out = Path(args.out)
    for o in list(bpy.data.objects):
        bpy.data.objects.remove(o)
    bpy.ops.wm.obj_import(filepath=args.mesh)
    src = bpy.context.selected_objects[0]  # volumes and intersections do not see its rotation
    peers = []

    mod = src.modifiers.new("solidify", "SOLIDIFY")
    mod.thickness, mod.offset, mod.use_even_offset, mod.use_rim = args.wall, -1.0, True, False
    V, F, seconds = evaluated(src)
    np.save(out / "solidify_V.npy", V)
    np.save(out / "solidify_F.npy", F)
    peers.append(dict(tool="Blender Solidify (even, no rim)", size=f"{args.wall:.4g}",
                      seconds=seconds, V=str(out / "solidify_V.npy"),
                      F=str(out / "solidify_F.npy")))  # fmt: skip
    src.modifiers.remove(mod)

    if bpy.app.version >= (5, 0, 0):
        tree = bpy.data.node_groups.new("sdf", "GeometryNodeTree")
        tree.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
        tree.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
        gin = tree.nodes.new("NodeGroupInput")
        to_grid = tree.nodes.new("GeometryNodeMeshToSDFGrid")
        to_grid.inputs["Voxel Size"].default_value = args.voxel
        to_grid.inputs["Band Width"].default_value = 3
        to_mesh = tree.nodes.new("GeometryNodeGridToMesh")
        tree.links.new(gin.outputs[0], to_grid.inputs["Mesh"])
        tree.links.new(to_grid.outputs["SDF Grid"], to_mesh.inputs["Grid"])
        tree.links.new(to_mesh.outputs["Mesh"], tree.nodes.new("NodeGroupOutput").inputs[0])
        src.modifiers.new("sdf", "NODES").node_group = tree
        V, F, seconds = evaluated(src)
        peers.append(dict(tool="Blender Mesh to SDF Grid + Grid to Mesh",
                          size=f"{args.voxel:.4g}", seconds=seconds))  # fmt: skip
    print("RESULT " + json.dumps({"peers": peers}))


if __name__ == "__main__":
    main()
