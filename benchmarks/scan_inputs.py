"""Real scans for bench_scans.py (issue 23): raw scanner points, with their sensor's noise, gaps
and uneven density, read from the cache of ``scan_data.py``.

Every scan is turned y-up (the frame of the shared OBJ meshes) and comes with the direction
from the object toward its scanner, for the renders "from the scanner's side" and "from the
back". Where a reconstructed surface of the same object exists in the same frame, it is the
scan's reference.

==============  ============================================================================
scan            what
==============  ============================================================================
bunny-0         Stanford bunny, one raw range scan (``bun000``, 40,256 points), front;
                reference: the Stanford reconstruction (the shared ``stanford-bunny.obj``,
                ``bun_zipper``, in ``bun000``'s frame)
bunny-45        the scan at 45 degrees (``bun045``, 40,097 points), moved into that frame by
                the pose of the repository's ``bun.conf``; same reference
bunny-0+45      both scans together (80,353 points: two aligned views, overlapping, with the
                seams and density jumps of a real registration); same reference
milk            a milk carton seen once by a depth camera (PCL's ``milk.pcd``, 13,704
                points); no reference
==============  ============================================================================

The scanner's direction: for the bunny scans, the mean outward normal of the reference at the
scanned points (the Cyberware scanner's pose is not in the files); for ``milk``, from the
carton's centroid to the camera at the origin of the cloud's own frame (PCD ``VIEWPOINT``).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import MESH_DIR  # noqa: E402
from scan_data import data_path  # noqa: E402

from lipsdf_blender.core.formats.files import load_geometry  # noqa: E402
from lipsdf_blender.core.surfaces.metrics import point_mesh_distance  # noqa: E402
from lipsdf_blender.core.surfaces.topology import face_normals  # noqa: E402

#: bun045's pose in bun.conf: translation, then the quaternion (x, y, z, w); the scan's points
#: p go to R(q)^-1 p + t (checked: mean distance to the reconstruction 0.09 mm, as bun000's)
BUN045_POSE = (
    (-0.0520211, -0.000383981, -0.0109223),
    (0.00548449, -0.294635, -0.0038555, 0.955586),
)

SCANS = ("bunny-0", "bunny-45", "bunny-0+45", "milk")


@dataclass
class Scan:
    """A raw scan: points ``P (n,3)`` (y up), the unit direction ``view (3,)`` from the object
    toward its scanner, and the reference ``V, F`` when there is one."""

    name: str
    P: np.ndarray
    view: np.ndarray
    V: np.ndarray | None = None
    F: np.ndarray | None = None

    @property
    def reference(self) -> bool:
        return self.V is not None


def read_range_scan(path: Path) -> np.ndarray:
    """The vertices of a Stanford range scan whose PLY header was stripped: the lines of three
    numbers (the lines after them are the scan's triangles, ``3 a b c``)."""
    rows = [line.split() for line in path.read_text().splitlines()]
    return np.array([[float(v) for v in r] for r in rows if len(r) == 3], dtype=np.float64)


def read_pcd(path: Path) -> np.ndarray:
    """The finite points of a PCD file (any encoding, through Open3D)."""
    import open3d as o3d

    P = np.asarray(o3d.io.read_point_cloud(str(path)).points, dtype=np.float64)
    return P[np.isfinite(P).all(axis=1)]


def bunny_reference() -> tuple[np.ndarray, np.ndarray]:
    g = load_geometry(MESH_DIR / "stanford-bunny.obj")
    return np.asarray(g.vertices, dtype=np.float64), np.asarray(g.faces, dtype=np.int64)


def seen_direction(P, V, F) -> np.ndarray:
    """The mean outward normal of the mesh ``V, F`` at the points ``P``' closest faces."""
    N, _ = face_normals(V, F)
    _, fi = point_mesh_distance(P, V, F)
    d = N[fi].mean(axis=0)
    return d / np.linalg.norm(d)


def bunny_scan(which: str) -> np.ndarray:
    if which == "0":
        return read_range_scan(data_path("bun000.ply"))
    from scipy.spatial.transform import Rotation

    t, q = BUN045_POSE
    P = read_range_scan(data_path("bun045.ply"))
    return Rotation.from_quat(q).inv().apply(P) + np.asarray(t)


def load_scan(name: str) -> Scan:
    """The scan ``name`` (one of :data:`SCANS`)."""
    if name.startswith("bunny-"):
        V, F = bunny_reference()
        P = np.vstack([bunny_scan(w) for w in name.split("-", 1)[1].split("+")])
        return Scan(name, P, seen_direction(P, V, F), V, F)
    if name == "milk":
        P = read_pcd(data_path("milk.pcd"))
        P = P * np.array([1.0, -1.0, -1.0])  # camera frame (y down, z ahead) -> y up
        view = -P.mean(axis=0)
        return Scan(name, P, view / np.linalg.norm(view))
    raise KeyError(f"unknown scan {name!r}; choose from {', '.join(SCANS)}")
