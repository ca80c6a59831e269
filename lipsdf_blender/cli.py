"""Command line: ``python -m lipsdf_blender train|remesh|offset|csg|points|hollow|batch|info ...``
(no Blender needed).

A user error is one line on stderr and exit status 2; the progress bar goes to stderr too, so
stdout carries only results.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from .core.training.presets import DEFAULT_PRESET, PRESET_NAMES, resolution_for

# what core.formats.files.load_geometry reads (kept here as text so --help imports nothing)
INPUT_FORMATS = (
    "mesh, point cloud or curve: .obj .ply .stl .off, points .xyz .pts .txt, "
    "scenes .gltf .glb .3mf (every mesh, with its node transform)"
)


class ProgressBar:
    """A one-line terminal progress bar fed with :class:`core.training.train.Progress` objects."""

    def __init__(self, stream=sys.stderr, width: int = 28):
        self.stream, self.width = stream, width
        self.tty = stream.isatty()
        self.last_line = 0.0

    def __call__(self, p) -> None:
        if p.phase != "train":
            self._write(f"{p.phase}: {p.device}", end=True)
            return
        frac = p.step / max(p.total, 1)
        bar = "#" * int(frac * self.width)
        eta = "" if not math.isfinite(p.eta) else f" ETA {p.eta:5.0f}s"
        line = (
            f"train [{bar:<{self.width}}] {p.step}/{p.total} loss {p.loss:.4f} "
            f"{p.elapsed:5.0f}s{eta}"
        )
        done = p.step >= p.total
        # Without a terminal, print a full line at most every 5 s instead of redrawing.
        if self.tty or done or time.monotonic() - self.last_line > 5:
            self.last_line = time.monotonic()
            self._write(line, end=done or not self.tty)

    def extraction(self, done: int, total: int) -> None:
        if self.tty:
            self._write(f"extract {done}/{total} points", end=False)

    def _write(self, text: str, end: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if end else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _noise_level(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a noise level: give a distance >= 0 in object units, e.g. 0.002"
        )
    return value


def _parser() -> argparse.ArgumentParser:
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
            type=_noise_level,
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
    p.add_argument("--save-field", default=None, help="also save the trained field here")
    p.add_argument("--resolution", type=int, default=None)
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


def _train(args, bar, share=None):
    from .core.formats.files import load_geometry
    from .core.training.summary import record_summary
    from .core.training.train import train_with

    field = train_with(load_geometry(args.input), args, progress=bar, cancel=share)
    summary = record_summary(field.record, noise_given=args.noise is not None)
    if summary:
        print(summary)
    return field


def _extract(target, levels, resolution, bar, device="cpu"):
    from .core.device import pick_device
    from .core.surfaces.extract import extract_levels

    results = extract_levels(
        target, levels, resolution=resolution, device=pick_device(device), progress=bar.extraction
    )
    _report(results)
    return results


def _report(results) -> None:
    for r in results:
        s = r.stats
        # The grid has `resolution` cells along the box's longest side only.
        nx, ny, nz = s.shape
        print(
            f"level {r.level:+g}: {len(r.vertices)} vertices, {len(r.faces)} faces; "
            f"{s.evaluations} network evaluations = {100 * s.ratio:.1f}% of the "
            f"{s.dense_evaluations} corners of a dense {nx} x {ny} x {nz} grid, "
            f"{s.seconds:.1f}s"
        )


def _offsets(field, distances, resolution, bar, device="cpu", detail=True, faces=0, sharp=True):
    from .core.device import pick_device
    from .core.surfaces.remesh import offset_surfaces

    results = offset_surfaces(
        field,
        distances,
        resolution=resolution,
        device=pick_device(device),
        progress=bar.extraction,
        detail=detail,
        faces=faces,
        sharp=sharp,
    )
    for r in results:
        print(f"offset {r.level:+g}: {len(r.vertices)} vertices, {len(r.faces)} faces")
    return results


def _save(path, results, names):
    from .core.errors import BadInputError
    from .core.formats.files import save_mesh, save_obj_objects

    empty = [n for n, r in zip(names, results, strict=True) if len(r.faces) == 0]
    if empty:
        raise BadInputError(f"no surface at {', '.join(empty)}: the level set is empty")
    if len(results) == 1:
        save_mesh(path, results[0].vertices, results[0].faces)
    else:
        if Path(path).suffix.lower() != ".obj":
            raise BadInputError("several surfaces are written as objects of one .obj file")
        save_obj_objects(
            path, [(n, r.vertices, r.faces) for n, r in zip(names, results, strict=True)]
        )
    print(f"wrote {path}")


def run(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "batch":
        from .batch.runner import run_batch

        return run_batch(args)
    from .core.fields.field import Field
    from .core.threads import FairShare, fair_share_wanted

    bar = ProgressBar()
    share = FairShare() if fair_share_wanted() else None
    if args.command == "train":
        field = _train(args, bar, share)
        field.save(args.output)
        print(
            f"wrote {args.output} (final loss {field.record['final_loss']:.4f}, "
            f"{field.record['seconds']:.1f}s on {field.record['device']})"
        )
    elif args.command == "remesh":
        field = Field.load(args.field) if args.field else _train(args, bar, share)
        if args.save_field and not args.field:
            field.save(args.save_field)
        from .core.device import pick_device
        from .core.surfaces.remesh import remesh

        res = resolution_for(args.resolution, [field.record])
        dev = pick_device(args.device)
        results = [
            remesh(
                field,
                res,
                args.detail,
                dev,
                progress=bar.extraction,
                faces=args.faces,
                sharp=args.sharp,
                cancel=share,
            )
        ]
        _report(results)
        _save(args.output, results, ["remesh"])
    elif args.command == "offset":
        field = Field.load(args.field)
        res = resolution_for(args.resolution, [field.record])
        if args.raw:
            from .core.surfaces.simplify import decimate_results

            results = _extract(field, args.distance, res, bar, args.device)
            decimate_results(results, args.faces)
        else:
            results = _offsets(
                field, args.distance, res, bar, args.device, args.detail, args.faces, args.sharp
            )
        _save(args.output, results, [f"offset{d:+g}" for d in args.distance])
    elif args.command == "csg":
        from .core.device import pick_device
        from .core.surfaces.remesh import combine_surfaces

        fields = [Field.load(f) for f in args.fields]
        res = resolution_for(args.resolution, [f.record for f in fields])
        result = combine_surfaces(
            args.op,
            fields,
            blend=args.blend,
            names=args.fields,
            resolution=res,
            detail=args.detail,
            device=pick_device(args.device),
            progress=bar.extraction,
            faces=args.faces,
            sharp=args.sharp,
        )
        results = [result]
        _report(results)
        _save(args.output, results, [args.op])
    elif args.command == "points":
        _points(Field.load(args.field), args)
    elif args.command == "hollow":
        _hollow(Field.load(args.field), args, bar, share)
    elif args.command == "info":
        _info(Field.load(args.field), args)
    elif args.command == "slice":
        _slice(Field.load(args.field), args)
    elif args.command == "render":
        _render([Field.load(f) for f in args.fields], args)
    return 0


#: The axes spanning an axis-aligned slice (right, up) for each normal, as Blender's side,
#: front and top views show them.
_SLICE_AXES = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}
#: The slice and the preview frame the bounds with this much room around them.
_MARGIN = 1.1


def _imsave(path, rgba) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # Row 0 of our pictures is the bottom one; a PNG starts at the top.
    plt.imsave(path, np.clip(rgba[::-1], 0.0, 1.0))
    print(f"wrote {path}")


def _check_pixels(n: int) -> int:
    from .core.errors import BadInputError

    if not 1 <= n <= 4096:
        raise BadInputError(f"--pixels must be from 1 to 4096, got {n}")
    return n


def _slice(field, args) -> None:
    import numpy as np

    from .core.tools.slicing import slice_image

    lo, hi = (np.asarray(b, dtype=np.float64) for b in field.bounds())
    a = "xyz".index(args.axis)
    b, c = _SLICE_AXES[args.axis]
    centre = 0.5 * (lo + hi)
    half = 0.5 * _MARGIN * np.maximum(hi - lo, 1e-9)
    if args.at is not None:
        centre[a] = args.at
    plane = np.eye(4)
    plane[:3, :3] = 0.0
    plane[:3, 3] = centre
    n = _check_pixels(args.pixels)
    ratio = half[c] / half[b]
    w, h = (n, max(1, round(n * ratio))) if ratio <= 1 else (max(1, round(n / ratio)), n)
    # Square pixels covering the extent: the plane is w x h of them.
    pixel = max(2.0 * half[b] / w, 2.0 * half[c] / h)
    plane[b, 0], plane[c, 1] = 0.5 * pixel * w, 0.5 * pixel * h
    pic = slice_image(field, plane, (w, h), args.spacing)
    print(
        f"{args.axis} = {centre[a]:g}: {w} x {h} pixels, distance {pic['min']:.4g} .. "
        f"{pic['max']:.4g}, largest |grad f| {pic['gradient_max']:.6f}"
    )
    out = Path(args.output)
    _imsave(out, pic["rgba"])
    _imsave(out.with_name(out.stem + "_gradient" + out.suffix), pic["rgba_gradient"])


def _look_at(centre, azimuth: float, elevation: float, distance: float):
    """Camera-to-world matrix of a camera ``distance`` from ``centre`` looking at it; azimuth
    about +Z from the front (-Y) towards +X, elevation above the XY plane, in degrees."""
    import numpy as np

    az, el = math.radians(azimuth), math.radians(elevation)
    back = np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])
    up = np.array([0.0, 0.0, 1.0])
    if abs(back @ up) > 0.999:  # looking straight down or up
        up = np.array([0.0, 1.0, 0.0])
    right = np.cross(up, back)
    right /= np.linalg.norm(right)
    M = np.eye(4)
    M[:3, 0], M[:3, 1], M[:3, 2] = right, np.cross(back, right), back
    M[:3, 3] = centre + distance * back
    return M


def _render(fields, args) -> None:
    import numpy as np

    from .core.fields.csg import combine
    from .core.tools.trace import render

    target = (
        fields[0]
        if len(fields) == 1
        else combine(args.op, fields, blend=args.blend, names=args.fields)
    )
    lo, hi = (np.asarray(b, dtype=np.float64) for b in target.bounds())
    centre, radius = 0.5 * (lo + hi), 0.5 * max(float(np.linalg.norm(hi - lo)), 1e-9)
    fov = math.radians(40.0)
    distance = _MARGIN * radius / math.sin(0.5 * fov)
    n = _check_pixels(args.pixels)
    camera = {
        "matrix": _look_at(centre, args.azimuth, args.elevation, distance),
        "type": "persp",
        "fov": fov,
        "pixels": [n, n],
        "clip": [1e-3 * distance, distance + 2 * radius],
    }
    out = render(target, camera)
    i = out["info"]
    print(
        f"{n} x {n} pixels in {i['seconds']:.2f} s per frame; {i['hits']} hits, "
        f"{i['steps_mean']:.1f} steps per ray on average, {i['steps_max']} at most"
    )
    _imsave(args.output, out["rgba"])


def _points(field, args) -> None:
    import numpy as np

    from .core.fields.query import sample_surface_points, spacing, value_and_gradient
    from .core.formats.files import save_points

    P = sample_surface_points(field, args.n, args.level, args.seed, args.resolution)
    _, g = value_and_gradient(field, P)
    N = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
    save_points(args.output, P, N)
    s = spacing(P)
    print(
        f"{len(P)} points on f = {args.level:g}: nearest-neighbour spacing mean {s['mean']:.6g}, "
        f"min {s['min']:.6g}, cv {s['cv']:.3f}"
    )
    print(f"wrote {args.output}")


def _hollow(field, args, bar, share) -> None:
    from .core.formats.files import save_mesh
    from .core.surfaces.mesh_distance import MeshDistance
    from .core.surfaces.remesh import remesh
    from .core.tools.printing import hollow

    res = resolution_for(args.resolution, [field.record])
    surface = remesh(
        field, res, args.detail, progress=bar.extraction, sharp=args.sharp, cancel=share
    )
    V, F, info = hollow(
        MeshDistance(surface.vertices, surface.faces),
        args.wall,
        resolution=res,
        sharp=args.sharp,
        faces=args.faces,
        progress=bar.extraction,
        cancel=share,
    )
    save_mesh(args.output, V, F)
    print(
        f"shell volume {info['volume']:.6g} (outer {info['outer_volume']:.6g} - inner "
        f"{info['inner_volume']:.6g}), {len(F)} faces, "
        f"{'watertight' if info['watertight'] else 'NOT watertight'}"
    )
    print(f"wrote {args.output}")


def _info(field, args) -> None:
    from .core.training.summary import record_summary

    r = field.record
    if args.json:
        print(
            json.dumps(
                {
                    "mode": field.mode,
                    "depth": field.net.depth,
                    "width": field.net.width,
                    "center": field.center.tolist(),
                    "scale": field.scale,
                    "bounds": [field.lo.tolist(), field.hi.tolist()],
                    "record": r,
                },
                indent=1,
            )
        )
        return
    rows = [
        ("mode", field.mode),
        ("network", f"{field.net.depth} SLL layers x {field.net.width}"),
        ("bounds", f"{field.lo.round(4).tolist()} .. {field.hi.round(4).tolist()}"),
        ("preset", r.get("preset")),
        ("input", f"{r.get('input_kind')} sha256 {str(r.get('input_hash'))[:16]}..."),
        ("device", r.get("device")),
        (
            "seconds",
            f"{r.get('seconds')} (labelling {r.get('seconds_labelling')}, "
            f"training {r.get('seconds_training')})",
        ),
        ("final loss", r.get("final_loss")),
        ("margin", r.get("margin")),
        ("samples", r.get("samples")),
    ]
    cloud = record_summary(r)
    if cloud:
        rows.append(("cloud", cloud))
    for k, v in rows:
        print(f"{k:>11}: {v}")


def main(argv=None) -> int:
    """Entry point; returns the exit status."""
    from .core.errors import CancelledError, LipSDFError

    try:
        return run(argv)
    except KeyboardInterrupt:
        print("\nlipsdf: interrupted", file=sys.stderr)
        return 130
    except CancelledError as exc:
        print(f"lipsdf: cancelled: {exc}", file=sys.stderr)
        return 130
    except LipSDFError as exc:
        print(f"lipsdf: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"lipsdf: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
