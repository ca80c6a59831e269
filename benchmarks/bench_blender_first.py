"""Seconds from pressing *Remesh* in Blender to the result object, headless (issue 22).

Each run is a fresh ``bpy`` process with the add-on imported from ``--root`` (this checkout by
default; give an older checkout, e.g. ``git archive <commit> | tar -x -C /tmp/before``, to
compare): it imports the OBJ, optionally starts the worker first (``warm``: the session's
worker already runs, as after a first job; ``cold``: pressing *Remesh* starts it, torch
import included), then runs ``bpy.ops.lipsdf.remesh`` (blocking, as a script does) with
the given preset. A spy on ``convert.new_mesh_object`` stamps the moment the result object
exists (``object``: the coarse preview where there is one, else the remesh), one on
``convert.replace_mesh`` the moment the full remesh replaces the preview's mesh (``full``:
equal to ``object`` without a preview); ``total`` is when the operator returned (the field
trained and stored). ``--preview 0`` turns the preview off (the remesh is the first object).

    PYTHONPATH=. python benchmarks/bench_blender_first.py --mesh ../shared/meshes/spot.obj \
        [--root /tmp/before] [--worker warm,cold] [--preset fast] [--preview 64]

Prints a markdown table and writes ``benchmarks/results/blender_first.json``. Run it alone:
on a shared machine the figures move with the other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine_info, markdown_table, tail, write_json  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
COLUMNS = (
    ("code", "code", "{}"),
    ("input", "input", "{}"),
    ("worker", "worker", "{}"),
    ("preview", "preview", "{}"),
    ("object s", "object", "{:.2f}"),
    ("full mesh s", "full", "{:.2f}"),
    ("total s", "total", "{:.2f}"),
    ("preview faces", "preview_faces", "{:,}"),
    ("faces", "faces", "{:,}"),
    ("field stored", "field", "{}"),
)

SCENARIO = """
import json, os, time
import bpy
import lipsdf_blender
lipsdf_blender.register()
from lipsdf_blender.blender import convert, fields, prefs

for o in list(bpy.data.objects):
    bpy.data.objects.remove(o)
bpy.ops.wm.obj_import(filepath=os.environ["BENCH_MESH"])
ob = bpy.context.selected_objects[0]
bpy.context.view_layer.objects.active = ob
if os.environ["BENCH_WORKER"] == "warm":
    prefs.client().start()
stamps = {}
real_new = convert.new_mesh_object
real_replace = getattr(convert, "replace_mesh", None)  # older checkouts have none


def spy(context, name, V, F, matrix=None, like=None):
    obj = real_new(context, name, V, F, matrix, like)
    stamps.setdefault("object", time.perf_counter() - t0)
    stamps["faces"] = int(len(F))
    return obj


def replace_spy(obj, V, F):
    real_replace(obj, V, F)
    stamps["full"] = time.perf_counter() - t0
    stamps["preview_faces"] = stamps["faces"]
    stamps["faces"] = int(len(F))


convert.new_mesh_object = spy
convert.replace_mesh = replace_spy
preview = os.environ["BENCH_PREVIEW"]
if preview:  # the remesh plan's previews at this resolution (0: none)
    import dataclasses

    from lipsdf_blender.blender.plans import build

    ask = build.preview_request
    build.preview_request = lambda src, s: ask(src, dataclasses.replace(s, preview=int(preview)))
t0 = time.perf_counter()
result = bpy.ops.lipsdf.remesh(preset=os.environ["BENCH_PRESET"])
stamps.setdefault("full", stamps.get("object"))
stamps["total"] = time.perf_counter() - t0
stamps["finished"] = "FINISHED" in result
stamps["field"] = fields.has_field(ob)
prefs.shutdown_worker()
print("BENCH " + json.dumps(stamps))
"""


def run_once(
    root: Path, mesh: Path, worker: str, preset: str, timeout: float, preview: str = ""
) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-blender-") as tmp:
        script = Path(tmp) / "scenario.py"
        script.write_text(textwrap.dedent(SCENARIO))
        env = dict(
            os.environ,
            PYTHONPATH=str(root),
            LIPSDF_WORKER_PYTHON=sys.executable,
            BLENDER_USER_RESOURCES=str(Path(tmp) / "user"),
            BENCH_MESH=str(mesh),
            BENCH_WORKER=worker,
            BENCH_PRESET=preset,
            BENCH_PREVIEW=preview,
        )
        proc = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
    lines = [x for x in proc.stdout.splitlines() if x.startswith("BENCH ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(tail(proc.stderr + proc.stdout))
    return json.loads(lines[-1][len("BENCH ") :])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mesh", type=Path, required=True)
    ap.add_argument("--root", type=Path, default=PROJECT, help="checkout to take the add-on from")
    ap.add_argument("--label", default=None, help="the row's name (default: the root's name)")
    ap.add_argument("--worker", default="warm,cold")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument(
        "--preview", default="", help="the preview's cells (0: none; default: the add-on's)"
    )
    ap.add_argument("--json", type=Path, default=PROJECT / "benchmarks/results/blender_first.json")
    args = ap.parse_args()
    label = args.label or args.root.resolve().name
    rows = []
    for worker in args.worker.split(","):
        root, mesh = args.root.resolve(), args.mesh.resolve()
        r = run_once(root, mesh, worker, args.preset, args.timeout, args.preview)
        shown = "yes" if "preview_faces" in r else "no"
        rows.append(dict(r, code=label, input=args.mesh.stem, worker=worker, preview=shown))
        print(markdown_table([rows[-1]], COLUMNS), flush=True)
    print(markdown_table(rows, COLUMNS))
    write_json(args.json, {"machine": machine_info(), "preset": args.preset, "rows": rows})


if __name__ == "__main__":
    main()
