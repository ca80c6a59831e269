"""The surfaces a user gets: remesh, and CSG built on the remeshed operands.

Every surface LipSDF hands out starts here, so remesh, offsets (:mod:`.meshfield`) and CSG share
one zero level set and one fidelity:

- :func:`remesh` extracts the zero level set of :func:`.detail.surface_field` (the input's own
  distances near the input, the trained field elsewhere);
- :func:`combine_surfaces` remeshes each operand that way and combines the exact signed
  distances of those closed meshes (:class:`.meshfield.MeshDistance`), so a union keeps each
  part's creases and detail; fields without an input surface are combined as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from .csg import combine
from .detail import surface_field
from .errors import BadInputError
from .extract import ExtractResult, extract

# Detail fields ask libigl for distances and winding numbers: its fast winding number
# rebuilds a tree on each call, so they get large batches.
_DETAIL_BATCH = 1 << 18


def remesh(
    field,
    resolution: int = 256,
    detail: bool = True,
    device=None,
    progress=None,
    cancel=None,
    batch_size: int = 65536,
) -> ExtractResult:
    """The closed surface of a field, with the input's detail where the input is trustworthy.

    Parameters
    ----------
    field : Field or DistanceField
    resolution : int
        Marching-cubes cells along the longest side.
    detail : bool
        Use the input surface stored with the field (:mod:`.detail`); False extracts the
        network's own zero level set.
    device, progress, cancel, batch_size
        As for :func:`lipsdf_blender.core.extract.extract_levels`.

    Returns
    -------
    ExtractResult
    """
    target = surface_field(field, detail)
    if target is not field:
        batch_size = max(batch_size, _DETAIL_BATCH)
    return extract(
        target,
        0.0,
        resolution=resolution,
        device=device,
        progress=progress,
        cancel=cancel,
        batch_size=batch_size,
    )


def combine_surfaces(
    op: str,
    fields: Sequence,
    blend: float = 0.0,
    matrices=None,
    names=None,
    resolution: int = 256,
    detail: bool = True,
    device=None,
    progress=None,
    cancel=None,
    batch_size: int = 65536,
) -> ExtractResult:
    """The closed surface of a CSG of fields (see :func:`lipsdf_blender.core.csg.combine`).

    With ``detail``, each operand that carries its input surface is remeshed first
    (:func:`remesh`) and enters the CSG as the exact signed distance to that closed mesh.
    """
    from .meshfield import MeshDistance

    combine(op, fields, blend=blend, matrices=matrices, names=names)  # refuse before any work
    operands = []
    for i, f in enumerate(fields):
        if detail and surface_field(f, True) is not f:
            r = remesh(f, resolution, True, device, progress, cancel, batch_size)
            if r.is_empty:
                name = names[i] if names else f"operand {i + 1}"
                raise BadInputError(f"{name} has no surface (its zero level set is empty)")
            operands.append(MeshDistance(r.vertices, r.faces))
        else:
            operands.append(f)
    target = combine(op, operands, blend=blend, matrices=matrices, names=names)
    if any(o is not f for o, f in zip(operands, fields, strict=True)):
        batch_size = max(batch_size, _DETAIL_BATCH)
    return extract(
        target,
        0.0,
        resolution=resolution,
        device=device,
        progress=progress,
        cancel=cancel,
        batch_size=batch_size,
    )
