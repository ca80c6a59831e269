"""glTF, GLB and 3MF scenes through trimesh (imported lazily): each mesh with its transform."""

from __future__ import annotations

import numpy as np

from ..errors import BadInputError
from ..inputs.geometry import Geometry
from .text import one_line


def read_scene(path: str, ext: str) -> Geometry:
    """Every mesh of a scene file, each moved by its node's world transform, as one mesh.

    A node that places the same mesh twice gives two copies. Without any triangles, the
    scene's point clouds are the points. Lines (glTF ``LINES``) are not read.
    """
    fmt = {".gltf": "glTF", ".glb": "GLB", ".3mf": "3MF"}[ext]
    try:
        # imported here so the worker and the add-on, which never read files, never load it
        import trimesh
    except ImportError as exc:
        raise BadInputError(
            f"reading {fmt} files needs the trimesh package ({one_line(exc)}); "
            "install the versions in requirements.txt."
        ) from exc
    try:
        scene = trimesh.load_scene(path, file_type=ext[1:], process=False)
        meshes, clouds = [], []
        for node in scene.graph.nodes_geometry:
            T, name = scene.graph[node]
            g = scene.geometry[name]
            if isinstance(g, trimesh.Trimesh) and len(g.faces):
                meshes.append((trimesh.transform_points(g.vertices, T), g.faces))
            elif isinstance(g, trimesh.PointCloud) and len(g.vertices):
                clouds.append(trimesh.transform_points(g.vertices, T))
    except ImportError as exc:  # 3MF: trimesh defers lxml / networkx errors to the call
        raise BadInputError(
            f"reading {fmt} files needs lxml and networkx ({one_line(exc)}); "
            "install the versions in requirements.txt."
        ) from exc
    except MemoryError as exc:
        raise BadInputError(
            f"the {fmt} file announces more data than fits in memory; it is corrupt."
        ) from exc
    except Exception as exc:  # trimesh's parsers raise anything (zip, XML, JSON, numpy)
        raise BadInputError(
            f"the {fmt} data is malformed or truncated ({type(exc).__name__}: {one_line(exc)})."
        ) from exc
    if meshes:
        offsets = np.cumsum([0] + [len(V) for V, _ in meshes[:-1]])
        V = np.concatenate([np.asarray(V, dtype=np.float64) for V, _ in meshes])
        F = np.concatenate(
            [np.asarray(F, dtype=np.int64) + o for (_, F), o in zip(meshes, offsets, strict=True)]
        )
        return Geometry("mesh", V, faces=F)
    if clouds:
        return Geometry("points", np.concatenate(clouds).astype(np.float64))
    raise BadInputError(f"the {fmt} scene has no triangles and no points.")
