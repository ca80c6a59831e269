"""Read geometry files into a :class:`~..inputs.geometry.Geometry`, write meshes out.

Formats, chosen by extension (case-insensitive):

=================  ==================================================================
``.obj``           faces -> mesh (polygons fan-triangulated); ``l`` lines only -> curve;
                   ``v`` lines only -> points, with ``vn`` normals when there is one per vertex
``.ply``           ascii, binary_little_endian and binary_big_endian; faces -> mesh; ``edge``
                   elements only -> curve; vertices only -> points (``nx ny nz`` -> normals)
``.stl``           ascii and binary; duplicate corners are merged into shared vertices
``.off``           OFF / COFF / NOFF; no faces -> points
``.xyz``           one point per line: ``x y z`` or ``x y z nx ny nz`` (``.pts`` / ``.txt`` too)
``.gltf`` ``.glb``  every mesh of the scene, each with its node's transform, as one mesh
``.3mf``           (or, without triangles, the scene's points); coordinates as stored
=================  ==================================================================

glTF/GLB and 3MF are read by trimesh (pinned in requirements.txt; 3MF also needs lxml and
networkx), imported only when such a file is read, so the worker and the add-on never load
it. The other formats stay our own numpy code: trimesh 5.2.0 (and meshio 5.3.5) were
measured on them (``benchmarks/bench_readers.py``) and each loses something a user would
notice on a common file:

- OBJ: trimesh splits vertices at every texture or normal seam (a flat-shaded or UV-mapped
  export comes back as a soup), drops ``l`` lines and unreferenced vertices, resolves negative
  indices from the end of the file and regroups faces by material. Ours reads the usual file in
  whole-file numpy passes, faster than trimesh, and names the line of a bad index.
- PLY: trimesh refuses binary files whose polygons are not all of one size (Blender's quad
  and triangle exports) or that have trailing bytes, and silently reads an ASCII file that
  ends early as a smaller cloud.
- STL: trimesh reads a truncated binary file as an empty scene; ours is already one
  ``frombuffer`` and our exact merge keeps the file's vertex order.
- XYZ: trimesh keeps colours, not normals.
- meshio groups faces by polygon size (the file's face order is lost), reads no XYZ, and was
  slower than trimesh on every case but the binary scan.

Every failure becomes a :class:`BadInputError` that names the file and says what was wrong.

Example
-------
>>> g = load_geometry("bunny.obj")            # doctest: +SKIP
>>> save_mesh("out.ply", g.vertices, g.faces)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from ..errors import BadInputError
from ..inputs.geometry import Geometry
from .obj import read_obj, write_obj
from .off import read_off, write_off
from .ply import read_ply, write_ply
from .scene import read_scene
from .stl import read_stl, write_stl
from .text import one_line, write_table
from .xyz import read_xyz

READ_EXTENSIONS: tuple[str, ...] = (
    ".obj",
    ".ply",
    ".stl",
    ".off",
    ".xyz",
    ".pts",
    ".txt",
    ".gltf",
    ".glb",
    ".3mf",
)
WRITE_EXTENSIONS: tuple[str, ...] = (".obj", ".ply", ".stl", ".off")
#: Read through trimesh (imported lazily, on the first such file).
SCENE_EXTENSIONS: tuple[str, ...] = (".gltf", ".glb", ".3mf")


def load_geometry(path: str | os.PathLike) -> Geometry:
    """Read a mesh, point cloud or curve file and return a validated :class:`Geometry`.

    Parameters
    ----------
    path : str or path-like
        File with one of the extensions in :data:`READ_EXTENSIONS`. Coordinates are kept in
        the file's own units.

    Returns
    -------
    Geometry
        ``kind`` is ``"mesh"`` if the file has faces, ``"curve"`` if it has only edges or
        polylines, and ``"points"`` otherwise.

    Raises
    ------
    BadInputError
        Unknown extension, missing or unreadable file, malformed content, no vertices, or
        geometry that :meth:`Geometry.validate` refuses (NaN, indices out of range, ...).
    """
    path = os.fspath(path)
    name = os.path.basename(path) or path
    ext = os.path.splitext(path)[1].lower()
    readers = {
        ".obj": read_obj,
        ".ply": read_ply,
        ".stl": read_stl,
        ".off": read_off,
        ".xyz": read_xyz,
        ".pts": read_xyz,
        ".txt": read_xyz,
    }
    if ext not in readers and ext not in SCENE_EXTENSIONS:
        raise BadInputError(
            f"Cannot read '{name}': unknown file type '{ext or '(none)'}'. "
            f"Supported: {', '.join(READ_EXTENSIONS)}."
        )
    if not os.path.exists(path):
        raise BadInputError(f"Cannot read '{path}': the file does not exist.")
    if os.path.isdir(path):
        raise BadInputError(f"Cannot read '{path}': it is a folder, not a file.")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise BadInputError(f"Cannot read '{path}': {exc.strerror or exc}.") from exc
    if not data.strip():
        raise BadInputError(f"Cannot read '{name}': the file is empty.")
    try:
        geom = read_scene(path, ext) if ext in SCENE_EXTENSIONS else readers[ext](data)
    except BadInputError as exc:
        raise BadInputError(f"Cannot read '{name}': {exc}") from exc
    except (ValueError, IndexError, UnicodeDecodeError, OverflowError) as exc:
        raise BadInputError(
            f"Cannot read '{name}': the {ext[1:].upper()} data is malformed ({one_line(exc)})."
        ) from exc
    if geom.n_vertices == 0:
        raise BadInputError(f"Cannot read '{name}': the file contains no vertices.")
    try:
        return geom.validate()
    except BadInputError as exc:
        raise BadInputError(f"'{name}': {exc}") from exc


def save_mesh(path: str | os.PathLike, V, F) -> None:
    """Write a triangle mesh atomically; the format follows the extension.

    Parameters
    ----------
    path : str or path-like
        ``.obj`` (text, ``%.9g``), ``.ply`` (binary little-endian, float32 vertices),
        ``.stl`` (binary, float32) or ``.off`` (text).
    V : (n, 3) float
        Vertex positions in object units.
    F : (m, 3) int
        Triangle indices into ``V`` (0-based).

    Raises
    ------
    BadInputError
        Unknown extension, wrong array shapes, or the file cannot be written.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    writers = {".obj": write_obj, ".ply": write_ply, ".stl": write_stl, ".off": write_off}
    if ext not in writers:
        raise BadInputError(
            f"Cannot save '{os.path.basename(path)}': unknown mesh file type "
            f"'{ext or '(none)'}'. Use one of {', '.join(WRITE_EXTENSIONS)}."
        )
    V = np.asarray(V, dtype=np.float64)
    F = np.asarray(F, dtype=np.int64).reshape(-1, 3) if np.size(F) == 0 else np.asarray(F)
    if V.ndim != 2 or V.shape[1] != 3 or F.ndim != 2 or F.shape[1] != 3:
        raise BadInputError(
            f"save_mesh needs V of shape (n, 3) and F of shape (m, 3); got {V.shape} and {F.shape}."
        )
    F = F.astype(np.int64)
    if F.size and (F.min() < 0 or F.max() >= len(V)):
        raise BadInputError("save_mesh: face indices out of range of the vertex array.")
    # Written beside and renamed into place: a reader (or a resumed batch) never sees half a
    # file, and a failed write leaves any earlier file as it was.
    tmp = path + ".part"
    try:
        with open(tmp, "wb") as fh:
            writers[ext](fh, V, F)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise BadInputError(f"Cannot write '{path}': {exc.strerror or exc}.") from exc


def save_obj_objects(path: str | os.PathLike, objects) -> None:
    """Write several meshes into one OBJ file, one ``o NAME`` object each.

    Parameters
    ----------
    path : str or path-like
        An ``.obj`` file.
    objects : sequence of (name, V (n, 3) float, F (m, 3) int)
        Object units; each mesh's faces index its own vertices.
    """
    path = os.fspath(path)
    try:
        with open(path, "wb") as fh:
            fh.write(b"# written by LipSDF\n")
            offset = 0
            for name, V, F in objects:
                V = np.asarray(V, dtype=np.float64).reshape(-1, 3)
                F = np.asarray(F, dtype=np.int64).reshape(-1, 3)
                fh.write(f"o {name}\n".encode())
                if len(V):
                    write_table(fh, V, "v %.9g %.9g %.9g")
                if len(F):
                    write_table(fh, F + 1 + offset, "f %d %d %d")
                offset += len(V)
    except OSError as exc:
        raise BadInputError(f"Cannot write '{path}': {exc.strerror or exc}.") from exc


def save_points(path: str | os.PathLike, P, N=None) -> None:
    """Write a point cloud as ``.xyz`` (text) or ``.ply`` (binary), with optional normals.

    Parameters
    ----------
    path : str or path-like
    P : (n, 3) float
        Points in object units.
    N : (n, 3) float, optional
        One normal per point.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    P = np.asarray(P, dtype=np.float64).reshape(-1, 3)
    cols = P if N is None else np.hstack([P, np.asarray(N, dtype=np.float64).reshape(-1, 3)])
    try:
        with open(path, "wb") as fh:
            if ext in (".xyz", ".pts", ".txt"):
                write_table(fh, cols, " ".join(["%.9g"] * cols.shape[1]))
            elif ext == ".ply":
                names = ["x", "y", "z"] + ([] if N is None else ["nx", "ny", "nz"])
                write_ply(fh, cols, None, names)
            else:
                raise BadInputError(f"Cannot save points as '{ext or '(none)'}'; use .xyz or .ply.")
    except OSError as exc:
        raise BadInputError(f"Cannot write '{path}': {exc.strerror or exc}.") from exc
