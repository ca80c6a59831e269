"""The commands that make surfaces: train, remesh, offset, csg."""

from __future__ import annotations

from pathlib import Path

from ..core.training.presets import resolution_for
from ..core.training.summary import witness_summary


def read_input(path):
    """The input geometry of ``path`` (timed as the ``read`` phase)."""
    from ..core.formats.files import load_geometry
    from ..core.phases import phase

    with phase("read"):
        return load_geometry(path)


def train_from_file(args, bar, share=None, geom=None):
    """Train a field on ``args.input`` (or on ``geom``, already read) with the command line's
    settings; print the cloud summary."""
    from ..core.training.summary import record_summary
    from ..core.training.train import train_with

    geom = read_input(args.input) if geom is None else geom
    field = train_with(geom, args, progress=bar, cancel=share)
    summary = record_summary(field.record, noise_given=args.noise is not None)
    if summary:
        print(summary)
    return field


def extract_raw(target, levels, resolution, bar, device="cpu"):
    """The field's own level sets (``offset --raw``), reported."""
    from ..core.device import pick_device
    from ..core.surfaces.extract import extract_levels

    results = extract_levels(
        target, levels, resolution=resolution, device=pick_device(device), progress=bar.extraction
    )
    report(results)
    return results


def report(results) -> None:
    """One line per extracted level: size and how much of a dense grid was evaluated."""
    for r in results:
        s = r.stats
        # The grid has `resolution` cells along the box's longest side only.
        nx, ny, nz = s.shape
        print(
            f"level {r.level:+g}: {len(r.vertices)} vertices, {len(r.faces)} faces; "
            f"{s.evaluations} field evaluations = {100 * s.ratio:.1f}% of the "
            f"{s.dense_evaluations} corners of a dense {nx} x {ny} x {nz} grid, "
            f"{s.seconds:.1f}s" + (f"; {w}" if (w := witness_summary(r.detail_share)) else "")
        )


def exact_offsets(
    field, distances, resolution, bar, device="cpu", detail=True, faces=0, sharp=True
):
    """Offsets measured exactly from the field's remesh, reported."""
    from ..core.device import pick_device
    from ..core.surfaces.remesh import offset_surfaces

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


def save_results(path, results, names):
    """One mesh file, or one OBJ holding one named object per result."""
    from ..core.errors import BadInputError
    from ..core.phases import phase

    empty = [n for n, r in zip(names, results, strict=True) if len(r.faces) == 0]
    if empty:
        raise BadInputError(f"no surface at {', '.join(empty)}: the level set is empty")
    with phase("write"):
        _write(path, results, names)
    print(f"wrote {path}")


def _write(path, results, names):
    from ..core.errors import BadInputError
    from ..core.formats.files import save_mesh, save_obj_objects

    if len(results) == 1:
        save_mesh(path, results[0].vertices, results[0].faces)
    else:
        if Path(path).suffix.lower() != ".obj":
            raise BadInputError("several surfaces are written as objects of one .obj file")
        save_obj_objects(
            path, [(n, r.vertices, r.faces) for n, r in zip(names, results, strict=True)]
        )


def train(args, bar, share) -> None:
    """``train``: a field file."""
    field = train_from_file(args, bar, share)
    field.save(args.output)
    print(
        f"wrote {args.output} (final loss {field.record['final_loss']:.4f}, "
        f"{field.record['seconds']:.1f}s on {field.record['device']})"
    )


def remesh(args, bar, share) -> None:
    """``remesh``: the closed surface of a field (trained here unless ``--field``).

    A closed mesh in signed mode with detail needs no training for its remesh (every vertex
    comes from its exact distance, :func:`~..core.fields.detail.exact_field`): it is written
    first, and the field is trained after it only when ``--save-field`` asks for one.
    ``--timings`` writes the seconds of each phase as JSON.
    """
    import json

    from ..core.phases import ORDER, recording

    with recording() as seconds:
        _remesh(args, bar, share)
    line = ", ".join(f"{k} {seconds[k]:.2f}" for k in ORDER if k in seconds)
    print(f"seconds: {line}")
    if args.timings:
        Path(args.timings).write_text(json.dumps({k: round(v, 4) for k, v in seconds.items()}))


def _remesh(args, bar, share) -> None:
    from ..core.device import pick_device
    from ..core.fields.detail import ExactField, exact_field
    from ..core.fields.field import Field
    from ..core.phases import phase
    from ..core.surfaces.remesh import remesh as remesh_field

    def surface_of(field, record):
        res = resolution_for(args.resolution, [record])
        with phase("extract"):
            r = remesh_field(
                field,
                res,
                args.detail,
                pick_device(args.device),
                progress=bar.extraction,
                faces=args.faces,
                sharp=args.sharp,
                cancel=share,
            )
        if r.is_empty and isinstance(field, ExactField):
            return False  # nothing inside (inside out?): training says why
        report([r])
        save_results(args.output, [r], ["remesh"])
        return True

    if args.field:
        field = Field.load(args.field)
        return surface_of(field, field.record)
    geom = read_input(args.input)
    exact = None
    if args.detail and (args.mode or "signed") == "signed":
        exact = exact_field(geom)
    if exact is not None and surface_of(exact, {"preset": args.preset}):
        print("closed input: remeshed from its exact distance, before any training")
        if args.save_field:
            train_from_file(args, bar, share, geom).save(args.save_field)
            print(f"wrote {args.save_field}")
        return
    field = train_from_file(args, bar, share, geom)
    if args.save_field:
        field.save(args.save_field)
    surface_of(field, field.record)


def offset(args, bar, share) -> None:
    """``offset``: surfaces at distances from a field's surface (``--raw``: its level sets)."""
    from ..core.fields.field import Field

    field = Field.load(args.field)
    res = resolution_for(args.resolution, [field.record])
    if args.raw:
        from ..core.surfaces.simplify import decimate_results

        results = extract_raw(field, args.distance, res, bar, args.device)
        decimate_results(results, args.faces)
    else:
        results = exact_offsets(
            field, args.distance, res, bar, args.device, args.detail, args.faces, args.sharp
        )
    save_results(args.output, results, [f"offset{d:+g}" for d in args.distance])


def csg(args, bar, share) -> None:
    """``csg``: union, intersection or difference of fields, as one closed surface."""
    from ..core.device import pick_device
    from ..core.fields.field import Field
    from ..core.surfaces.remesh import combine_surfaces

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
    report(results)
    save_results(args.output, results, [args.op])
