"""The surfaces a user gets: remesh, offsets and CSG, all built on the remeshed surface.

Every surface LipSDF hands out starts here, so remesh, offsets and CSG share one zero level set
and one fidelity:

- :func:`remesh` extracts the zero level set of :func:`.detail.surface_field` (the input's own
  distances near the input, the trained field elsewhere);
- :func:`combine_surfaces` remeshes each operand that way and combines the exact signed
  distances of those closed meshes (:class:`.mesh_distance.MeshDistance`), so a union keeps each
  part's creases and detail; fields without an input surface are combined as they are;
- :func:`offset_surfaces` extracts the levels of the exact signed distance of the remesh.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..errors import BadInputError
from ..fields.csg import combine
from ..fields.detail import BAND, DetailField, ExactField, has_detail, surface_field
from .extract import ExtractResult, cell_size, extract, extract_levels
from .mesh_distance import MeshDistance
from .simplify import decimate_results
from .topology import component_labels, face_normals, is_watertight

log = logging.getLogger(__name__)

# Pieces smaller than this fraction of the input's diagonal that never touch the input are
# dropped (see drop_specks).
_SPECK = 0.05
# Detail fields ask libigl for distances and winding numbers: its fast winding number
# rebuilds a tree on each call (0.3 s for a 100k-point cloud), so they get large batches: 2^20
# rather than 2^18 points takes a 100k cloud's detail phase from 5.6 to 4.4 s (the same mesh,
# 25 MB more at the peak); meshes are unchanged.
_DETAIL_BATCH = 1 << 20


def remesh(
    field,
    resolution: int = 256,
    detail: bool = True,
    device=None,
    progress=None,
    cancel=None,
    batch_size: int = 65536,
    faces: int = 0,
    sharp: bool = True,
) -> ExtractResult:
    """The closed surface of a field, with the input's detail where the input is trustworthy.

    Parameters
    ----------
    field : Field or DistanceField
        A trained field, or the :class:`~..fields.detail.ExactField` of a closed mesh
        (:func:`~..fields.detail.exact_field`), whose remesh needs no training and equals
        the remesh of any field trained on that mesh.
    resolution : int
        Marching-cubes cells along the longest side.
    detail : bool
        Use the input surface stored with the field (:mod:`.detail`); False extracts the
        network's own zero level set.
    device, progress, cancel, batch_size
        As for :func:`lipsdf_blender.core.surfaces.extract.extract_levels`.
    faces : int
        Target face count (:func:`.simplify.decimate`); 0 keeps every triangle.
    sharp : bool
        Dual contouring (:mod:`.contour`) for the detailed surface, so the input's creases
        and corners stay sharp; False keeps marching cubes.

    Returns
    -------
    ExtractResult
    """
    r = _remesh(field, resolution, detail, device, progress, cancel, batch_size, sharp)
    return decimate_results([r], faces)[0]


def _remesh(
    field, resolution, detail, device, progress, cancel, batch_size, sharp=True
) -> ExtractResult:
    kw = dict(resolution=resolution, device=device, progress=progress, cancel=cancel)
    target = surface_field(field, detail, band=_band(field, resolution))
    if not isinstance(target, (DetailField, ExactField)):
        return extract(field, 0.0, batch_size=batch_size, **kw)
    r = extract(target, 0.0, batch_size=max(batch_size, _DETAIL_BATCH), sharp=sharp, **kw)
    cell = r.stats.cell_size
    size = _SPECK * target.surface.diagonal()
    # A small piece next to a cloud's points is a bubble of its noise as often as a part: a
    # cloud keeps only pieces of at least `size`.
    near = None if target.surface.kind == "cloud" else target.surface.distance
    r.vertices, r.faces = drop_specks(r.vertices, r.faces, size, near, touch=cell, tiny=3.0 * cell)
    if len(r.faces) and not is_watertight(r.faces):
        # Extraction follows every surface it finds until it closes, so this is a last
        # resort: only the open pieces give way to the field's own surface around them.
        field_surface = extract(field, 0.0, batch_size=batch_size, **kw)
        r.vertices, r.faces = close_open_parts(
            r.vertices, r.faces, field_surface.vertices, field_surface.faces, 2.0 * cell
        )
    r.detail_share = detail_share(target, r.vertices, r.faces)
    return r


def detail_share(target, V: np.ndarray, F: np.ndarray, most: int = 100_000) -> float:
    """Share of a surface's area whose position came from the input rather than the field.

    Each vertex counts with a third of its faces' area and comes from the input where
    ``target.exact`` says ``h`` is the input's own distance (:class:`.detail.DetailField`).
    Past ``most`` vertices a fixed random subset of them is asked (the share to within
    about half a percent).

    Parameters
    ----------
    target : DetailField
    V : (n, 3) float
        Vertices, object units; ``F (m, 3) int`` the faces.

    Returns
    -------
    float in [0, 1]; 0 for an empty surface.
    """
    if len(F) == 0:
        return 0.0
    area = np.zeros(len(V))
    np.add.at(area, F.ravel(), np.repeat(face_normals(V, F)[1] / 3.0, 3))
    idx = np.arange(len(V))
    if len(V) > most:
        idx = np.sort(np.random.default_rng(0).choice(len(V), most, replace=False))
    total = area[idx].sum()
    if not total > 0:
        return 0.0
    return float(area[idx][target.exact(V[idx])].sum() / total)


def close_open_parts(V, F, VF, FF, pad: float):
    """Replace the connected pieces of ``(V, F)`` that are not closed by the pieces of the
    field's surface ``(VF, FF)`` whose boxes meet theirs (grown by ``pad``).

    A local fall-back: every closed piece of the detailed surface stays as it is.

    Returns
    -------
    V, F : the mesh with those pieces swapped (vertices compacted).
    """
    k, label = component_labels(F, len(V))
    face_label = label[F[:, 0]]
    open_parts = [c for c in range(k) if not is_watertight(F[face_label == c])]
    if not open_parts:
        return V, F
    kf, label_f = component_labels(FF, len(VF)) if len(FF) else (0, np.zeros(0, np.int64))
    boxes = [(V[label == c].min(axis=0) - pad, V[label == c].max(axis=0) + pad) for c in open_parts]
    take = [
        c
        for c in range(kf)
        if any(
            np.all(VF[label_f == c].min(axis=0) <= hi)
            and np.all(VF[label_f == c].max(axis=0) >= lo)
            for lo, hi in boxes
        )
    ]
    log.warning(
        "%d open piece(s) of the detailed surface replaced by %d piece(s) of the field's own "
        "surface.",
        len(open_parts),
        len(take),
    )
    keep = ~np.isin(face_label, open_parts)
    F_keep, F_new = F[keep], FF[np.isin(label_f[FF[:, 0]], take)] if len(FF) else FF
    V_all = np.concatenate([V, VF])
    F_all = np.concatenate([F_keep, F_new + len(V)])
    used = np.zeros(len(V_all), dtype=bool)
    used[F_all.ravel()] = True
    remap = np.cumsum(used) - 1
    return np.ascontiguousarray(V_all[used]), np.ascontiguousarray(remap[F_all])


def _band(field, resolution: int) -> float | None:
    """Band half-width: the default, but at least 2.5 cells so every cell edge that crosses
    the input has both ends inside the band."""
    if not has_detail(field):
        return None
    return max(BAND * field.surface.diagonal(), 2.5 * cell_size(field, resolution))


def drop_specks(
    V: np.ndarray,
    F: np.ndarray,
    size: float,
    distance=None,
    touch: float = 0.0,
    tiny: float = 0.0,
):
    """Remove small connected pieces that are not part of the input.

    A piece smaller than ``size`` across that nowhere comes within ``touch`` of the input
    (``distance(points) -> (k,)``, the exact distance to it) is where the winding number and
    the field met beside an open rim, not a part of the input: a small part of the input lies
    on the input. A piece smaller than ``tiny`` goes in any case (below what the grid
    resolves). Without ``distance`` every piece smaller than ``size`` goes.

    Returns
    -------
    V, F : the mesh without those pieces (vertices compacted).
    """
    if len(F) == 0:
        return V, F
    n = len(V)
    k, label = component_labels(F, n)
    if k == 1:
        return V, F
    lo = np.full((k, 3), np.inf)
    hi = np.full((k, 3), -np.inf)
    np.minimum.at(lo, label, V)
    np.maximum.at(hi, label, V)
    extent = np.linalg.norm(hi - lo, axis=1)
    keep = extent >= size
    if distance is not None:
        small = np.flatnonzero(~keep & (extent >= tiny))
        vs = np.flatnonzero(np.isin(label, small))
        near = np.zeros(k, dtype=bool)
        near[label[vs[distance(V[vs]) <= touch]]] = True
        keep |= near
    keep_face = keep[label[F[:, 0]]]
    if keep_face.all():
        return V, F
    F = F[keep_face]
    used = np.zeros(n, dtype=bool)
    used[F.ravel()] = True
    remap = np.cumsum(used) - 1
    return np.ascontiguousarray(V[used]), np.ascontiguousarray(remap[F])


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
    faces: int = 0,
    sharp: bool = True,
) -> ExtractResult:
    """The closed surface of a CSG of fields (see :func:`lipsdf_blender.core.fields.csg.combine`).

    With ``detail``, each operand that carries its input surface is remeshed first
    (:func:`remesh`) and enters the CSG as the exact signed distance to that closed mesh.
    ``faces`` is a target face count for the result (0: every triangle); ``sharp`` uses
    dual contouring for the operands and the result, so seams between them stay sharp.
    """
    combine(op, fields, blend=blend, matrices=matrices, names=names)  # refuse before any work
    operands = []
    for i, f in enumerate(fields):
        if detail and has_detail(f):
            r = _remesh(f, resolution, True, device, progress, cancel, batch_size, sharp)
            if r.is_empty:
                name = names[i] if names else f"operand {i + 1}"
                raise BadInputError(f"{name} has no surface (its zero level set is empty)")
            operands.append(MeshDistance(r.vertices, r.faces))
        else:
            operands.append(f)
    target = combine(op, operands, blend=blend, matrices=matrices, names=names)
    target_detailed = any(o is not f for o, f in zip(operands, fields, strict=True))
    if target_detailed:
        batch_size = max(batch_size, _DETAIL_BATCH)
    r = extract(
        target,
        0.0,
        resolution=resolution,
        device=device,
        progress=progress,
        cancel=cancel,
        batch_size=batch_size,
        sharp=sharp and target_detailed,
    )
    return decimate_results([r], faces)[0]


def offset_surfaces(
    field,
    distances: Sequence[float],
    resolution: int = 256,
    exact: bool = True,
    device=None,
    progress=None,
    cancel=None,
    detail: bool = True,
    faces: int = 0,
    sharp: bool = True,
    surface=None,
):
    """Surfaces at signed distances from a field's surface, in object units.

    Parameters
    ----------
    field : DistanceField
    distances : sequence of float
        Object units; negative offsets go inward.
    resolution : int
        Marching-cubes cells along the longest side, for the surface and each offset.
    exact : bool
        True: measure distances exactly from the field's zero level set (extracted at
        ``resolution``). False: extract the field's own level sets ``f = D`` directly, which
        are conservative (at least ``D`` away) but lie farther out where the field's slope
        is below 1.
    device, progress, cancel
        As for :func:`lipsdf_blender.core.surfaces.extract.extract_levels`.
    detail : bool
        Measure from the surface with the input's detail (:func:`remesh`), the
        same surface a remesh gives.
    surface : ExtractResult, optional
        That surface, when the caller remeshed already (with the same ``resolution``,
        ``detail`` and ``sharp``): it is not extracted again.
    faces : int
        Target face count of each offset surface (0: every triangle).
    sharp : bool
        Dual contouring for the surface and the offsets (creases of inward offsets stay
        sharp; outward ones are round, as true offsets are).

    Returns
    -------
    list of ExtractResult, one per distance, in the order given.
    """
    kw = dict(resolution=resolution, progress=progress, cancel=cancel)
    if not exact:
        return decimate_results(extract_levels(field, list(distances), device=device, **kw), faces)
    if surface is None:
        surface = remesh(field, device=device, detail=detail, sharp=sharp, **kw)
    if len(surface.faces) == 0:
        raise BadInputError("the field has no surface (its zero level set is empty)")
    shells = extract_levels(
        MeshDistance(surface.vertices, surface.faces), list(distances), sharp=sharp, **kw
    )
    return decimate_results(shells, faces)
