"""A picture of a batch: each input beside what the batch made of it (the README's picture).

    .venv/bin/python -m lipsdf_blender batch ../shared/meshes --out /tmp/batch --jobs 2
    .venv/bin/python scripts/render_batch.py --results /tmp/batch --out docs/images/batch

Reads ``results.json`` of a finished batch, imports every ``ok`` shape's input and its remesh
into headless Blender (no add-on needed: the files are plain meshes) and renders each pair with
Workbench, the input on the left and the remesh on the right. Then it puts the pairs in a grid
(two to a row), with the table's faces, watertightness and seconds over each: ``overview.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bpy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render_tools import load_file, render, save_figure  # noqa: E402 (the scripts folder, put on the path above)


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    p = argparse.ArgumentParser(description="pictures of a LipSDF batch")
    p.add_argument("--results", required=True, help="the batch's --out folder")
    p.add_argument("--out", default="docs/images/batch")
    p.add_argument("--size", default="640x400")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    results = Path(args.results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = json.loads((results / "results.json").read_text())
    rows = [r for r in doc["rows"] if r["status"] == "ok"]
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    w, h = (int(v) for v in args.size.split("x"))
    scene.render.resolution_x, scene.render.resolution_y = w, h
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    tiles = []
    for r in rows:
        stem = Path(r["input"]).stem
        src = load_file(Path(r["input"]), f"{stem}.input")
        remesh = next(f for f in r["outputs"] if ".remesh." in f)
        res = load_file(results / r["folder"] / remesh, f"{stem}.remesh")
        # side by side: the remesh one and a half widths to the right of the input
        dims = src.dimensions
        res.location = (1.25 * max(dims.x, dims.z, dims.y), 0, 0)
        path = out / f"{stem}.png"
        render(path, [src, res], direction=(0.3, -1.0, 0.35))
        tiles.append((path, stem, r))
    overview(out, tiles)


def overview(out: Path, tiles) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    import numpy as np

    cols = 2 if len(tiles) > 2 else len(tiles)
    nrows = -(-len(tiles) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(5.2 * cols, 2.9 * nrows), dpi=100)
    axes = np.atleast_1d(axes).ravel()
    for ax in axes[len(tiles) :]:
        ax.axis("off")
    for ax, (path, stem, r) in zip(axes, tiles, strict=False):
        img = mpimg.imread(path)
        # cropped to the shapes (what differs from the background corner), with some room
        ys, xs = np.nonzero(np.abs(img[..., :3] - img[0, 0, :3]).max(axis=2) > 0.02)
        pad = 12
        if len(xs):
            img = img[
                max(ys.min() - pad, 0) : ys.max() + pad, max(xs.min() - pad, 0) : xs.max() + pad
            ]
        ax.imshow(img)
        closed = "watertight" if r["watertight"] else "open"
        ax.set_title(
            f"{stem}: input | remesh\n{r['faces']:,} faces, {closed}, {r['seconds_total']:.0f} s",
            fontsize=9,
        )
        ax.axis("off")
    top = 1 - 0.6 / (2.9 * nrows)  # 0.6 in above each row for its two-line title
    fig.subplots_adjust(left=0, right=1, bottom=0, top=top, wspace=0.02, hspace=0.25)
    save_figure(fig, out / "overview.png")


if __name__ == "__main__":
    main()
