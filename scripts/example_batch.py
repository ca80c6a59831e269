"""Batch example: remesh a model and give it a shell, with no interface.

    blender -b -P scripts/example_batch.py -- --input scan.obj --offset 0.02 --out scan_clean.obj
    python scripts/example_batch.py --zip dist/lipsdf_blender-0.1.0.zip --input scan.obj ...

In Blender (with the LipSDF extension installed and its worker set up in the preferences) or
with the ``bpy`` module (``--zip`` installs the extension first; set ``BLENDER_USER_RESOURCES``
to a scratch folder and ``LIPSDF_WORKER_PYTHON`` to a Python with torch). Without ``--input``
it uses Suzanne. The operators block and print progress lines; the script exports the remesh
and its offsets to one OBJ and saves the scene next to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bpy


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    ap = argparse.ArgumentParser(description="LipSDF batch remesh and offset")
    ap.add_argument("--input", help="OBJ, PLY or STL to load (default: Suzanne)")
    ap.add_argument("--out", default="lipsdf_out.obj", help="OBJ to write")
    ap.add_argument("--offset", type=float, action="append", help="offset distance (repeat)")
    ap.add_argument("--preset", default="fast", choices=("fast", "balanced", "high"))
    ap.add_argument("--steps", type=int, help="training steps instead of the preset's")
    ap.add_argument("--resolution", type=int, default=0, help="0: the preset's")
    ap.add_argument("--zip", help="install this extension zip first (bpy module)")
    args = ap.parse_args(argv)

    if args.zip:
        bpy.ops.extensions.package_install_files(
            filepath=str(Path(args.zip).resolve()), repo="user_default", enable_on_install=True
        )
    from lipsdf_blender import api  # the add-on publishes this name when it registers
    from lipsdf_blender.core.errors import LipSDFError

    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    if args.input:
        suffix = Path(args.input).suffix.lower()
        importer = {
            ".obj": bpy.ops.wm.obj_import,
            ".ply": bpy.ops.wm.ply_import,
            ".stl": bpy.ops.wm.stl_import,
        }.get(suffix)
        if importer is None:
            sys.exit(f"example: cannot read {suffix} files; use OBJ, PLY or STL")
        importer(filepath=str(Path(args.input).resolve()))
        source = bpy.context.selected_objects[0]
    else:
        bpy.ops.mesh.primitive_monkey_add()
        source = bpy.context.active_object

    settings = {"preset": args.preset, "resolution": args.resolution}
    if args.steps:
        settings["steps"] = args.steps
    try:
        made = [api.remesh(source, **settings)]
        if args.offset:
            made += api.offset(source, args.offset, **settings)
    except LipSDFError as exc:
        sys.exit(f"example: {exc}")

    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in made)
    out = Path(args.out).resolve()
    bpy.ops.wm.obj_export(filepath=str(out), export_selected_objects=True, export_materials=False)
    bpy.ops.wm.save_as_mainfile(filepath=str(out.with_suffix(".blend")))
    for obj in made:
        sys.stdout.write(f"example: {obj.name}: {len(obj.data.polygons):,} faces\n")
    sys.stdout.write(f"example: wrote {out} and {out.with_suffix('.blend')}\n")


if __name__ == "__main__":
    main()
