"""Blender objects to arrays and back, with ``foreach_get`` / ``foreach_set`` and numpy.

Inputs are read from the *evaluated* object (modifiers, curve resolution and geometry nodes
applied), in the object's local coordinates:

=================  ==========================================================================
object             becomes
=================  ==========================================================================
mesh with faces    ``mesh``: triangles of its loop triangulation
mesh, no faces     ``points``: its vertices, normals from a float-vector point attribute
or edges           (``normal``, ``normals``, ``N``, ``custom_normal``), never from Blender's
                   vertex normals (for loose vertices those are just the direction from
                   the origin)
point cloud        ``points``: likewise
curve (no bevel)   ``curve``: the evaluated polyline's edges; with bevel or extrusion, ``mesh``
hair curves        ``curve``: consecutive control points joined
text, surface,     ``mesh`` (through their evaluated mesh)
metaball
=================  ==========================================================================

A PLY scan imported with File › Import › Stanford PLY (``bpy.ops.wm.ply_import``, Blender 4.0
to 5.0) is a mesh of loose vertices with its ``nx ny nz`` in a ``normal`` point attribute and
its colours in ``Col``: the normals go to the worker, the colours are left on the object.
Converted to a Point Cloud object (Object › Convert), it keeps both attributes.
Normals with a NaN, an infinity or a zero vector are dropped (the worker estimates them).
"""

from __future__ import annotations

import bpy
import numpy as np

from ..core.errors import BadInputError
from ..core.fields.transform import similarity_scales
from .plans.common import Source

SUPPORTED_TYPES = {"MESH", "CURVE", "SURFACE", "META", "FONT", "POINTCLOUD", "CURVES"}
#: Point attributes read as a cloud's normals, first found wins. ``normal`` is what the PLY
#: importer and most scripts write; ``custom_normal`` is Blender's own when a mesh stores
#: free custom normals per point.
NORMAL_ATTRIBUTES = ("normal", "normals", "N", "custom_normal")
COLLECTION = "LipSDF"


def supported(obj) -> bool:
    return obj is not None and obj.type in SUPPORTED_TYPES


def _read(collection, attr: str, n: int, width: int, dtype) -> np.ndarray:
    buf = np.empty(n * width, dtype=dtype)
    if n:
        collection.foreach_get(attr, buf)
    return buf.reshape(n, width) if width > 1 else buf


def _point_normals(attributes, n: int) -> np.ndarray | None:
    for name in NORMAL_ATTRIBUTES:
        att = attributes.get(name)
        if att is not None and att.domain == "POINT" and att.data_type == "FLOAT_VECTOR":
            return _read(att.data, "vector", n, 3, np.float32)
    return None


def _positions(attributes, n: int) -> np.ndarray:
    return _read(attributes["position"].data, "vector", n, 3, np.float32)


def _mesh_arrays(me) -> tuple[str, dict]:
    n = len(me.vertices)
    verts = _read(me.vertices, "co", n, 3, np.float32)
    if len(me.polygons):
        me.calc_loop_triangles()
        tris = _read(me.loop_triangles, "vertices", len(me.loop_triangles), 3, np.int32)
        return "mesh", {"vertices": verts, "faces": tris}
    if len(me.edges):
        # A mesh of edges only is a wire: treat it as a polyline, like a curve object.
        edges = _read(me.edges, "vertices", len(me.edges), 2, np.int32)
        return "curve", {"vertices": verts, "edges": edges}
    arrays = {"vertices": verts}
    normals = _point_normals(me.attributes, n)
    if normals is not None:
        arrays["normals"] = normals
    return "points", arrays


def _curves_arrays(curves) -> tuple[str, dict]:
    n = len(curves.points)
    verts = _positions(curves.attributes, n)
    offsets = _read(curves.curve_offset_data, "value", len(curves.curve_offset_data), 1, np.int32)
    starts, ends = offsets[:-1], offsets[1:]
    edges = [
        np.stack([np.arange(a, b - 1), np.arange(a + 1, b)], axis=1)
        for a, b in zip(starts, ends, strict=True)
    ]
    edges = np.concatenate(edges).astype(np.int32) if edges else np.zeros((0, 2), np.int32)
    return "curve", {"vertices": verts, "edges": edges}


def object_arrays(obj, depsgraph) -> tuple[str, dict]:
    """``(kind, arrays)`` of an object's evaluated geometry in its local coordinates.

    Raises
    ------
    BadInputError
        The object's type is not supported, it has no geometry, or a coordinate is not finite.
    """
    if not supported(obj):
        raise BadInputError(
            f"{obj.name} is a {obj.type.lower()} object; LipSDF takes meshes, curves, "
            "point clouds, text, surfaces and metaballs"
        )
    ev = obj.evaluated_get(depsgraph)
    if obj.type == "POINTCLOUD":
        pc = ev.data
        n = len(pc.points)
        kind, arrays = "points", {"vertices": _positions(pc.attributes, n)}
        normals = _point_normals(pc.attributes, n)
        if normals is not None:
            arrays["normals"] = normals
    elif obj.type == "CURVES":
        kind, arrays = _curves_arrays(ev.data)
    else:
        me = ev.to_mesh()
        try:
            if me is None:
                raise BadInputError(f"{obj.name} has no geometry to work on")
            kind, arrays = _mesh_arrays(me)
        finally:
            ev.to_mesh_clear()
    verts = arrays["vertices"]
    if len(verts) == 0:
        raise BadInputError(f"{obj.name} is empty: it has no vertices; add geometry first")
    if kind == "curve" and len(arrays["edges"]) == 0:
        kind, arrays = "points", {"vertices": verts}
    if not np.isfinite(verts).all():
        bad = int((~np.isfinite(verts)).any(axis=1).sum())
        raise BadInputError(
            f"{obj.name} has {bad} vertices with NaN or infinite coordinates; fix or delete them "
            "(Mesh › Clean Up) first"
        )
    if "normals" in arrays and not usable_normals(arrays["normals"]):
        del arrays["normals"]  # estimated in the worker instead
    return kind, arrays


def usable_normals(N: np.ndarray) -> bool:
    """Finite and nonzero everywhere: a direction for every point."""
    if not np.isfinite(N).all():
        return False
    return bool((np.einsum("ij,ij->i", N, N) > 1e-12).all())


def is_cloud(obj) -> bool:
    """Does ``obj`` look like a point cloud (a Point Cloud object, or a mesh of loose vertices)?

    Cheap enough for the panel: it reads the object's own data, without evaluating modifiers.
    """
    if obj is None:
        return False
    if obj.type == "POINTCLOUD":
        return True
    me = obj.data if obj.type == "MESH" else None
    return me is not None and len(me.vertices) > 0 and not len(me.edges) and not len(me.polygons)


def object_source(obj, depsgraph, field_file: str | None = None) -> Source:
    kind, arrays = object_arrays(obj, depsgraph)
    matrix = np.array(obj.matrix_world, dtype=np.float64)
    return Source(obj.name, kind, arrays, field_file=field_file, matrix=matrix)


def check_uniform_scale(obj, why: str) -> None:
    """Refuse an object whose world transform stretches distances unevenly.

    The same test as the worker's (:func:`~..core.fields.transform.similarity_scales`), made here
    so the user hears it before any training.

    Raises
    ------
    BadInputError
        Its scale differs between axes, the transform shears or a scale is zero, with what to do.
    """
    try:
        similarity_scales(np.array(obj.matrix_world, dtype=np.float64), obj.name)
    except BadInputError as exc:
        raise BadInputError(f"{exc} (it would stretch {why})") from None


# -- results ----------------------------------------------------------------------------------
def result_collection(context):
    """The scene's "LipSDF" collection, made and linked when missing."""
    coll = bpy.data.collections.get(COLLECTION)
    if coll is None:
        coll = bpy.data.collections.new(COLLECTION)
    scene_coll = context.scene.collection
    if coll.name not in scene_coll.children and not _linked_below(scene_coll, coll):
        scene_coll.children.link(coll)
    return coll


def _linked_below(parent, coll) -> bool:
    return any(c == coll or _linked_below(c, coll) for c in parent.children)


def _new_object(context, name: str, fill, matrix=None, blocks=None):
    """A new object in the LipSDF collection, its data a new block of ``blocks`` (default
    ``bpy.data.meshes``) made by ``fill(data)``; nothing is left behind when ``fill`` fails."""
    blocks = bpy.data.meshes if blocks is None else blocks
    data = blocks.new(name)
    try:
        fill(data)
        obj = bpy.data.objects.new(name, data)
    except Exception:
        blocks.remove(data)
        raise
    if matrix is not None:
        obj.matrix_world = matrix
    result_collection(context).objects.link(obj)
    return obj


def new_mesh_object(context, name: str, vertices, faces, matrix=None, like=None):
    """A new mesh object in the LipSDF collection; materials copied from ``like``."""

    def fill(me):
        fill_mesh(me, vertices, faces)
        if like is not None and getattr(like, "data", None) is not None:
            for mat in getattr(like.data, "materials", ()):
                me.materials.append(mat)

    return _new_object(context, name, fill, matrix)


def fill_mesh(me, vertices, faces) -> None:
    """Add the triangles ``faces (m, 3)`` over ``vertices (n, 3)`` to the empty mesh ``me``,
    smooth shaded."""
    V = np.ascontiguousarray(vertices, dtype=np.float32)
    F = np.ascontiguousarray(faces, dtype=np.int32)
    me.vertices.add(len(V))
    me.vertices.foreach_set("co", V.ravel())
    me.loops.add(F.size)
    me.loops.foreach_set("vertex_index", F.ravel())
    me.polygons.add(len(F))
    me.polygons.foreach_set("loop_start", np.arange(0, F.size, 3, dtype=np.int32))
    me.update(calc_edges=True)
    if len(F):
        me.shade_smooth()


def replace_mesh(obj, vertices, faces) -> None:
    """Give the mesh object ``obj`` these triangles in place of its own: the same object and
    mesh datablock (name, transform, selection, materials, modifiers kept), so nothing is
    left behind (a coarse preview replaced by the full remesh)."""
    if obj.mode == "EDIT":  # edit mode keeps its own copy, written back on leaving it
        raise BadInputError(f"{obj.name} is in Edit Mode; leave it to get the remesh")
    me = obj.data
    me.clear_geometry()
    fill_mesh(me, vertices, faces)


def new_points_object(context, name: str, points, normals=None, matrix=None):
    """A new point cloud object (``normal`` point attribute) in the LipSDF collection.

    Blender 5.1 and later fill a Point Cloud directly (``PointCloud.resize``); 4.3 to 5.0
    build a mesh of loose vertices (what a PLY import makes of a scan) and convert it; 4.2
    keeps that mesh. The add-on reads all three as a point cloud.
    """
    P = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    if hasattr(bpy.types.PointCloud, "resize"):
        return _new_pointcloud(context, name, P, normals, matrix)

    def fill(me):
        me.vertices.add(len(P))
        me.vertices.foreach_set("co", P.ravel())
        if normals is not None:
            attr = me.attributes.new("normal", "FLOAT_VECTOR", "POINT")
            N = np.ascontiguousarray(normals, dtype=np.float32).reshape(-1, 3)
            attr.data.foreach_set("vector", N.ravel())
        me.update()

    return _to_pointcloud(context, _new_object(context, name, fill, matrix))


def _new_pointcloud(context, name: str, P, normals, matrix):
    def fill(pc):
        pc.resize(len(P))
        pc.attributes["position"].data.foreach_set("vector", P.ravel())
        if normals is not None:
            attr = pc.attributes.new("normal", "FLOAT_VECTOR", "POINT")
            N = np.ascontiguousarray(normals, dtype=np.float32).reshape(-1, 3)
            attr.data.foreach_set("vector", N.ravel())

    return _new_object(context, name, fill, matrix, bpy.data.pointclouds)


def _to_pointcloud(context, obj):
    """``obj`` (loose vertices) as a Point Cloud object, or as it is where it cannot be."""
    targets = bpy.ops.object.convert.get_rna_type().properties["target"].enum_items
    if "POINTCLOUD" not in targets.keys():  # no Convert > Point Cloud in this Blender (4.2)
        return obj
    before = obj.data
    try:
        with context.temp_override(
            active_object=obj, object=obj, selected_objects=[obj],
            selected_editable_objects=[obj],
        ):  # fmt: skip
            bpy.ops.object.convert(target="POINTCLOUD")
    except RuntimeError:
        return obj
    if obj.type == "POINTCLOUD":
        attrs = obj.data.attributes
        for hidden in (".select_vert", ".selection"):  # the mesh's selection (5.1+: .selection)
            if attrs.get(hidden) is not None:
                attrs.remove(attrs[hidden])
        if before.users == 0:
            bpy.data.meshes.remove(before)
    return obj


def mesh_vertices(obj, world: bool = False) -> np.ndarray:
    """The vertices of ``obj``'s own mesh (before modifiers), ``(n, 3)`` float64, in object
    or world coordinates: where attributes written on that mesh belong."""
    me = obj.data
    V = _read(me.vertices, "co", len(me.vertices), 3, np.float32).astype(np.float64)
    if world:
        M = np.array(obj.matrix_world, dtype=np.float64)
        V = V @ M[:3, :3].T + M[:3, 3]
    return V


def set_point_attribute(me, name: str, values) -> object:
    """Write a per-vertex attribute (``(n,)`` float, ``(n, 3)`` vector or ``(n, 4)`` colour),
    replacing one of that name; returns it."""
    values = np.ascontiguousarray(values, dtype=np.float32)
    kind, prop = {1: ("FLOAT", "value"), 3: ("FLOAT_VECTOR", "vector")}.get(
        values.shape[1] if values.ndim == 2 else 1, ("FLOAT_COLOR", "color")
    )
    old = me.attributes.get(name)
    if old is not None:
        me.attributes.remove(old)
    attr = me.attributes.new(name, kind, "POINT")
    attr.data.foreach_set(prop, values.ravel())
    return attr


_DATA = {"MESH": "meshes", "POINTCLOUD": "pointclouds", "VOLUME": "volumes"}


def remove_objects(objects) -> None:
    """Delete objects made by a run that then failed, with their data (meshes, point clouds,
    volumes)."""
    for obj in objects:
        data = obj.data
        bpy.data.objects.remove(obj)
        if data is not None and data.users == 0:
            getattr(bpy.data, _DATA.get(data.id_type, "meshes")).remove(data)
