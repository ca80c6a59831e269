"""The command line's arguments: every command, its options and their defaults (presets and
resolutions from :mod:`..core.training.presets`). Imports nothing heavy."""

from __future__ import annotations

import argparse
import math

from ..core.training.presets import DEFAULT_PRESET, PRESET_NAMES

# what core.formats.files.load_geometry reads (kept here as text so --help imports nothing)
INPUT_FORMATS = (
    "mesh, point cloud or curve: .obj .ply .stl .off, points .xyz .pts .txt, "
    "scenes .gltf .glb .3mf (every mesh, with its node transform)"
)


def noise_level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a noise level: give a distance >= 0 in object units, e.g. 0.002"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m lipsdf_blender",
        description="1-Lipschitz neural distance fields: train, remesh, offset, CSG.",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    def surface_args(p):
        p.add_argument(
            "--no-detail",
            dest="detail",
            action="store_false",
            help="extract the network's own zero level set, without the input's exact "
            "distances near the input",
        )
        p.add_argument(
            "--no-sharp",
            dest="sharp",
            action="store_false",
            help="marching cubes instead of dual contouring (creases cut by a cell-wide chamfer)",
        )
        p.add_argument(
            "--faces",
            type=int,
            default=0,
            help="decimate each result to about this many triangles (0: keep all)",
        )

    def training_args(p):
        p.add_argument("--preset", choices=PRESET_NAMES, default=DEFAULT_PRESET)
        p.add_argument(
            "--mode",
            choices=("signed", "unsigned"),
            default=None,
            help="default: signed, or unsigned for a curve",
        )
        p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--thickness",
            type=float,
            default=None,
            help="unsigned mode: shell half-thickness in object units",
        )
        p.add_argument("--steps", type=int, default=None, help="override the preset's steps")
        p.add_argument(
            "--normals",
            choices=("auto", "estimate"),
            default="auto",
            help="point clouds: use the file's normals when it has them (auto; their signs "
            "are still checked) or always estimate them",
        )
        p.add_argument(
            "--noise",
            type=noise_level,
            default=None,
            metavar="SIGMA",
            help="point clouds: the points' noise (standard deviation) in object units; "
            "default: estimated",
        )

    p = sub.add_parser("train", help="train a field from a mesh, point cloud or curve file")
    p.add_argument("input", help=INPUT_FORMATS)
    p.add_argument("-o", "--output", required=True, help="FIELD.lipsdf")
    training_args(p)

    p = sub.add_parser("remesh", help="a clean watertight mesh from the zero level set")
    p.add_argument("input", help=INPUT_FORMATS + "; ignored with --field")
    p.add_argument("-o", "--output", required=True, help="OUT.obj / .ply / .stl / .off")
    p.add_argument("--field", default=None, help="use this trained field instead of training")
    p.add_argument(
        "--save-field",
        default=None,
        help="also save the trained field here (a closed mesh's remesh is written first, "
        "then its field is trained)",
    )
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument(
        "--timings", default=None, help="write seconds per phase (read, label, train, ...) as JSON"
    )
    training_args(p)
    surface_args(p)

    p = sub.add_parser("offset", help="surfaces at distances from a field's surface")
    p.add_argument("field")
    p.add_argument("-o", "--output", required=True)
    p.add_argument(
        "--distance",
        type=float,
        action="append",
        required=True,
        help="object units, negative = inward; repeat for several",
    )
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu")
    p.add_argument(
        "--raw",
        action="store_true",
        help="extract the field's own level sets f = D (conservative: at least D "
        "away, farther where its slope is below 1) instead of exact offsets "
        "of its surface",
    )
    surface_args(p)

    p = sub.add_parser("csg", help="union / intersection / difference of fields")
    p.add_argument("op", choices=("union", "intersection", "difference"))
    p.add_argument("fields", nargs="+")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--blend", type=float, default=0.0, help="smooth blend radius, object units")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="cpu")
    surface_args(p)

    p = sub.add_parser("points", help="evenly spread points (with normals) on a field's surface")
    p.add_argument("field")
    p.add_argument("-n", type=int, required=True, help="number of points")
    p.add_argument("--level", type=float, default=0.0, help="level set, object units")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resolution", type=int, default=64, help="sampling cells, longest side")
    p.add_argument("-o", "--output", required=True, help="OUT.ply / .xyz")

    p = sub.add_parser("hollow", help="a shell of a given wall thickness, for 3D printing")
    p.add_argument("field")
    p.add_argument("--wall", type=float, required=True, help="wall thickness, object units")
    p.add_argument("--resolution", type=int, default=None)
    p.add_argument("-o", "--output", required=True, help="OUT.obj / .ply / .stl / .off")
    surface_args(p)

    p = sub.add_parser("info", help="describe a .lipsdf file")
    p.add_argument("field")
    p.add_argument("--json", action="store_true", help="print the whole record as JSON")

    p = sub.add_parser("slice", help="pictures of a field on an axis-aligned plane")
    p.add_argument("field")
    p.add_argument("--axis", choices=("x", "y", "z"), default="z", help="the plane's normal")
    p.add_argument("--at", type=float, default=None, help="the plane's coordinate on the axis; "
                   "default: the middle of the bounds")  # fmt: skip
    p.add_argument("--pixels", type=int, default=512, help="pixels along the longer side")
    p.add_argument("--spacing", type=float, default=0.0, help="isoline spacing, object units")
    p.add_argument("-o", "--output", required=True, help="slice.png; the gradient-norm "
                   "picture goes to slice_gradient.png")  # fmt: skip

    p = sub.add_parser("render", help="a sphere-traced preview picture of fields")
    p.add_argument("fields", nargs="+")
    p.add_argument("--op", choices=("union", "intersection", "difference"), default="union")
    p.add_argument("--blend", type=float, default=0.0, help="smooth blend radius, object units")
    p.add_argument("--pixels", type=int, default=512, help="width and height")
    p.add_argument("--azimuth", type=float, default=35.0, help="degrees about +Z from the front")
    p.add_argument("--elevation", type=float, default=25.0, help="degrees above the XY plane")
    p.add_argument("-o", "--output", required=True, help="preview.png")

    p = sub.add_parser(
        "batch",
        help="train, remesh and offset many shapes (local worker processes or a Ray cluster), "
        "with a results table; a rerun skips finished shapes",
    )
    p.add_argument("inputs", nargs="+", help="files, folders (searched recursively) or glob "
                   "patterns (quote them: 'scans/**/*.ply')")  # fmt: skip
    p.add_argument("--out", required=True, help="output folder: one folder per shape, "
                   "results.csv and results.json")  # fmt: skip
    p.add_argument("--offset", type=float, action="append", metavar="D",
                   help="also an offset surface at D object units (negative: inward); repeat "
                   "for several")  # fmt: skip
    p.add_argument("--format", choices=("obj", "ply", "stl", "off"), default="obj")
    p.add_argument("--resolution", type=int, default=None, help="default: the preset's")
    p.add_argument("--jobs", type=int, default=1, help="local worker processes (the CPU "
                   "cores shared out among them, or one CUDA GPU each)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch threads a worker or Ray "
                   "task (default: the cores / --jobs, or --cpus-per-task)")  # fmt: skip
    p.add_argument("--ray", default=None, metavar="auto|ADDRESS", help="run the shapes as Ray "
                   "tasks: auto (this machine's cluster, else a new local one), host:6379 or "
                   "ray://host:10001; needs Ray (requirements-ray.txt)")  # fmt: skip
    p.add_argument("--cpus-per-task", type=int, default=None, help="Ray: CPUs a task (default "
                   "1, or a GPU task's share of the node's CPUs, at most 8)")  # fmt: skip
    p.add_argument("--shared-storage", action="store_true", help="Ray: tasks read inputs and "
                   "write outputs at the same paths (a file system every node sees) instead of "
                   "sending bytes through Ray")  # fmt: skip
    p.add_argument("--force", action="store_true", help="run finished shapes again")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    training_args(p)
    surface_args(p)
    return ap
