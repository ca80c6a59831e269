"""The field tools on the command line: points, hollow, info, slice and render."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..core.fields.field import Field
from ..core.training.presets import resolution_for

#: The axes spanning an axis-aligned slice (right, up) for each normal, as Blender's side,
#: front and top views show them.
SLICE_AXES = {"x": (1, 2), "y": (0, 2), "z": (0, 1)}
#: The slice and the preview frame the bounds with this much room around them.
MARGIN = 1.1


def save_picture(path, rgba) -> None:
    """An RGBA array (row 0 at the bottom) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    # Row 0 of our pictures is the bottom one; a PNG starts at the top.
    plt.imsave(path, np.clip(rgba[::-1], 0.0, 1.0))
    print(f"wrote {path}")


def check_pixels(n: int) -> int:
    """``--pixels``, refused outside 1..4096."""
    from ..core.errors import BadInputError

    if not 1 <= n <= 4096:
        raise BadInputError(f"--pixels must be from 1 to 4096, got {n}")
    return n


def slice_plane(args, bar, share) -> None:
    """``slice``: the field on an axis-aligned plane, and its gradient norm, as pictures."""
    field = Field.load(args.field)
    import numpy as np

    from ..core.tools.slicing import slice_image

    lo, hi = (np.asarray(b, dtype=np.float64) for b in field.bounds())
    a = "xyz".index(args.axis)
    b, c = SLICE_AXES[args.axis]
    centre = 0.5 * (lo + hi)
    half = 0.5 * MARGIN * np.maximum(hi - lo, 1e-9)
    if args.at is not None:
        centre[a] = args.at
    plane = np.eye(4)
    plane[:3, :3] = 0.0
    plane[:3, 3] = centre
    n = check_pixels(args.pixels)
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
    save_picture(out, pic["rgba"])
    save_picture(out.with_name(out.stem + "_gradient" + out.suffix), pic["rgba_gradient"])


def look_at(centre, azimuth: float, elevation: float, distance: float):
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


def render(args, bar, share) -> None:
    """``render``: a sphere-traced picture of one field or a CSG of several."""
    fields = [Field.load(f) for f in args.fields]
    import numpy as np

    from ..core.fields.csg import combine
    from ..core.tools.trace import render

    target = (
        fields[0]
        if len(fields) == 1
        else combine(args.op, fields, blend=args.blend, names=args.fields)
    )
    lo, hi = (np.asarray(b, dtype=np.float64) for b in target.bounds())
    centre, radius = 0.5 * (lo + hi), 0.5 * max(float(np.linalg.norm(hi - lo)), 1e-9)
    fov = math.radians(40.0)
    distance = MARGIN * radius / math.sin(0.5 * fov)
    n = check_pixels(args.pixels)
    camera = {
        "matrix": look_at(centre, args.azimuth, args.elevation, distance),
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
    save_picture(args.output, out["rgba"])


def points(args, bar, share) -> None:
    """``points``: evenly spread points with normals on a level set."""
    field = Field.load(args.field)
    import numpy as np

    from ..core.fields.query import sample_surface_points, spacing, value_and_gradient
    from ..core.formats.files import save_points

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


def hollow_shell(args, bar, share) -> None:
    """``hollow``: the remesh with an inward wall, as one closed shell."""
    field = Field.load(args.field)
    from ..core.formats.files import save_mesh
    from ..core.surfaces.mesh_distance import MeshDistance
    from ..core.surfaces.remesh import remesh
    from ..core.tools.printing import hollow

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


def info(args, bar, share) -> None:
    """``info``: what a field file holds (``--json``: all of it)."""
    field = Field.load(args.field)
    from ..core.training.summary import record_summary

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
