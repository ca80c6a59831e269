"""The one input type every training job takes: a mesh, an oriented or bare point cloud, or a curve.

A :class:`Geometry` holds plain numpy arrays in the object's own units. It does not repair or
triangulate anything: a mesh may be open, a triangle soup, self-intersecting or in several
parts, because the distance fields are learnt from the generalized winding number and the
unsigned distance, which need none of that. :meth:`Geometry.validate` only refuses what no
method can use (no points, NaN, indices out of range, everything on one point).

Example
-------
>>> import numpy as np
>>> g = Geometry.mesh(np.eye(3), np.array([[0, 1, 2]]))
>>> g.validate().kind
'mesh'
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import BadInputError
from ..types import Edges, Faces, Points

Kind = Literal["mesh", "points", "curve"]
KINDS: tuple[str, ...] = ("mesh", "points", "curve")

#: Largest coordinate (object units) a field can work with: fields and surfaces evaluate
#: object coordinates in 32-bit floats (at most 3.4e38), and boxes and distances add a margin.
LARGEST = 1e36
#: Smallest extent (object units): below it, 32-bit floats cannot resolve the shape's detail.
SMALLEST = 1e-30


@dataclass
class Geometry:
    """Input geometry for a distance field.

    Attributes
    ----------
    kind : {"mesh", "points", "curve"}
    vertices : (n, 3) float64
        Positions in the object's own units (mesh vertices, points or curve vertices).
    faces : (m, 3) int64 or None
        Triangles (mesh only). Any soup is allowed: open, non-manifold, several parts.
    normals : (n, 3) float64 or None
        One normal per point (point clouds only; ``None`` if the cloud has none).
    edges : (k, 2) int64 or None
        Segments of a polyline or curve network (curve only).
    """

    kind: Kind
    vertices: Points
    faces: Faces | None = None
    normals: Points | None = None
    edges: Edges | None = None

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def mesh(cls, V, F) -> Geometry:
        """A triangle mesh or soup from ``V (n,3)`` and ``F (m,3)``; arrays are copied."""
        return cls("mesh", _as_float(V, "vertices"), faces=_as_int(F, "faces"))

    @classmethod
    def points(cls, P, N=None) -> Geometry:
        """A point cloud ``P (n,3)``, with optional normals ``N (n,3)``; arrays are copied."""
        return cls(
            "points",
            _as_float(P, "points"),
            normals=None if N is None else _as_float(N, "normals"),
        )

    @classmethod
    def curve(cls, V, E) -> Geometry:
        """A polyline or curve network: vertices ``V (n,3)`` joined by edges ``E (k,2)``."""
        return cls("curve", _as_float(V, "curve vertices"), edges=_as_int(E, "edges"))

    # -- queries ------------------------------------------------------------------------------

    @property
    def n_vertices(self) -> int:
        """Number of vertices or points."""
        return int(np.shape(self.vertices)[0]) if np.ndim(self.vertices) >= 1 else 0

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box ``(lo, hi)``, two ``(3,)`` float64 arrays, object units."""
        V = np.asarray(self.vertices, dtype=np.float64)
        if V.ndim != 2 or V.shape[0] == 0:
            raise BadInputError("The geometry has no vertices, so it has no bounding box.")
        return V.min(axis=0), V.max(axis=0)

    def diagonal(self) -> float:
        """Length of the bounding-box diagonal, in object units."""
        lo, hi = self.bounds()
        return float(np.linalg.norm(hi - lo))

    def validate(self) -> Geometry:
        """Check that the geometry can be used; return ``self`` so calls can be chained.

        Raises
        ------
        BadInputError
            With a message saying what is wrong and what to do: unknown kind, wrong array
            shape, no vertices, NaN or infinite coordinates, indices out of range, a missing
            or extra connectivity array, all points on one spot, or coordinates too large or
            an extent too small for the 32-bit arithmetic of fields (see :data:`LARGEST`,
            :data:`SMALLEST`).
        """
        if self.kind not in KINDS:
            raise BadInputError(
                f"Unknown geometry kind {self.kind!r}; use one of {', '.join(KINDS)}."
            )
        what = {"mesh": "mesh", "points": "point cloud", "curve": "curve"}[self.kind]
        V = np.asarray(self.vertices)
        if V.ndim != 2 or V.shape[1] != 3:
            raise BadInputError(
                f"The {what}'s vertices must be an (n, 3) array of x, y, z; got shape {V.shape}."
            )
        n = V.shape[0]
        if n == 0:
            raise BadInputError(
                f"The {what} has no vertices. Select an object with geometry in it."
            )
        if not np.issubdtype(V.dtype, np.number):
            raise BadInputError(f"The {what}'s vertices are not numbers (dtype {V.dtype}).")
        bad = ~np.isfinite(V).all(axis=1)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise BadInputError(
                f"The {what} has {int(bad.sum())} vertices with NaN or infinite coordinates "
                f"(first: vertex {first}). Delete or fix them (e.g. Mesh > Clean Up) and retry."
            )
        if not np.ptp(V, axis=0).any():
            where = f"All {n} vertices of the {what} are at the same place"
            if n == 1:
                where = f"The {what} has a single vertex"
            raise BadInputError(
                f"{where}, so there is no shape to learn. Check the object's "
                "scale and that it is not collapsed."
            )
        reach = float(np.abs(V).max())
        if reach > LARGEST:
            raise BadInputError(
                f"The {what}'s coordinates reach {reach:.3g}, beyond what a distance field can "
                f"hold (32-bit numbers, up to about {LARGEST:g}). Scale the object down "
                "(or move it nearer the origin) and retry."
            )
        extent = float(np.ptp(V, axis=0).max())
        if extent < SMALLEST:
            raise BadInputError(
                f"The {what} is only {extent:.3g} units across, too small for a distance field "
                f"to resolve (32-bit numbers, at least {SMALLEST:g}). Scale the object up and "
                "retry."
            )

        if self.kind == "mesh":
            if self.faces is None:
                raise BadInputError(
                    "A mesh needs faces; for vertices alone use a point cloud instead."
                )
            _check_indices(self.faces, 3, n, "faces", "triangle", what)
            if len(self.faces) == 0:
                raise BadInputError(
                    "The mesh has vertices but no faces. Use it as a point cloud, or add faces."
                )
        elif self.faces is not None:
            raise BadInputError(f"A {what} must not have faces; make it a mesh instead.")

        if self.kind == "curve":
            if self.edges is None:
                raise BadInputError("A curve needs edges joining its vertices.")
            _check_indices(self.edges, 2, n, "edges", "edge", what)
            if len(self.edges) == 0:
                raise BadInputError(
                    "The curve has vertices but no edges. Use it as a point cloud, or add edges."
                )
        elif self.edges is not None:
            raise BadInputError(f"A {what} must not have edges; make it a curve instead.")

        if self.normals is not None:
            if self.kind != "points":
                raise BadInputError(
                    f"Only point clouds carry normals; a {what} gets its own from its faces."
                )
            N = np.asarray(self.normals)
            if N.shape != V.shape:
                raise BadInputError(
                    f"The point cloud has {n} points but normals of shape {N.shape}; give one "
                    "normal per point, or none to have them estimated."
                )
            if not np.isfinite(N).all():
                raise BadInputError(
                    "Some point normals are NaN or infinite. Drop the normals to have them "
                    "estimated, or fix them."
                )
        return self

    def content_hash(self) -> str:
        """Hex sha256 of kind, shapes and array bytes: identifies the input a field was trained on.

        Arrays are hashed as little-endian float64 / int64, so the hash does not depend on the
        dtype or memory layout the arrays were given in.
        """
        h = hashlib.sha256()
        h.update(self.kind.encode())
        for name, arr, dtype in (
            ("vertices", self.vertices, "<f8"),
            ("faces", self.faces, "<i8"),
            ("normals", self.normals, "<f8"),
            ("edges", self.edges, "<i8"),
        ):
            if arr is None:
                continue
            a = np.ascontiguousarray(np.asarray(arr), dtype=dtype)
            h.update(f"|{name}{a.shape}|".encode())
            h.update(a.tobytes())
        return h.hexdigest()


def is_closed(V, F) -> bool:
    """Do the triangles bound a volume? With vertices at the same position welded, every
    edge is used as often from ``a`` to ``b`` as from ``b`` to ``a``.

    Then the winding number is an integer away from the triangles (self-intersecting and
    overlapping closed parts included), so inside and outside are sure everywhere and a
    remesh needs no training (:func:`~..fields.detail.exact_field`). Non-manifold edges
    are allowed; a hole, an open rim or a flipped part makes the mesh not closed. numpy
    only: the add-on's plans ask it too, before choosing how to remesh.

    Parameters
    ----------
    V : (n, 3) float
        Vertices.
    F : (m, 3) int
        Triangles.

    Examples
    --------
    >>> V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    >>> F = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    >>> is_closed(V, F), is_closed(V, F[1:])
    (True, False)
    """
    V = np.asarray(V)
    F = np.asarray(F)
    if len(V) == 0 or F.ndim != 2 or F.shape[1] != 3 or len(F) == 0:
        return False
    _, weld = np.unique(V, axis=0, return_inverse=True)
    F = weld.reshape(-1)[F]
    E = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]).astype(np.int64)
    E = E[E[:, 0] != E[:, 1]]
    if len(E) == 0:
        return False
    n = int(F.max()) + 1
    fwd = E[:, 0] * n + E[:, 1]
    back = E[:, 1] * n + E[:, 0]
    # the multiset of edges equals the multiset of their reverses
    return bool(np.array_equal(np.sort(fwd), np.sort(back)))


def principal_extents(P, trim: float = 0.0, axes: bool = False):
    """How far the points ``P (n, 3)`` spread along their three principal axes, largest first.

    Parameters
    ----------
    P : (n, 3) float
    trim : float
        Share of the points left out at each end of every axis (0.01: the spread between
        the 1st and the 99th percentile), so that a few stray points do not count.

    axes : bool
        Also return the axes.

    Returns
    -------
    extents : (3,) float64
        Same units as ``P``: a plane's last value is 0, a line's last two are.
    axes : (3, 3) float64, only with ``axes``
        Unit principal directions as columns, in the same order.

    Example
    -------
    >>> principal_extents([[0, 0, 0], [1, 1, 0], [2, 2, 0]]).round(6).tolist()
    [2.828427, 0.0, 0.0]
    """
    P = np.asarray(P, dtype=np.float64).reshape(-1, 3)
    X = P - P.mean(axis=0) if len(P) else P
    size = float(np.abs(X).max()) if len(P) >= 2 else 0.0
    if not np.isfinite(size) or size == 0:
        return (np.zeros(3), np.eye(3)) if axes else np.zeros(3)
    X = X / size  # the products below stay finite at any scale
    vecs = np.linalg.eigh(X.T @ X)[1][:, ::-1]
    lo, hi = np.quantile(X @ vecs, [trim, 1.0 - trim], axis=0)
    ext = np.abs(hi - lo) * size
    return (ext, vecs) if axes else ext


# -- helpers ----------------------------------------------------------------------------------


def _as_float(a, name: str) -> Points:
    try:
        return np.array(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"The {name} cannot be read as numbers: {exc}") from exc


def _as_int(a, name: str) -> np.ndarray:
    try:
        arr = np.array(a)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"The {name} cannot be read as indices: {exc}") from exc
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.issubdtype(arr.dtype, np.number) or not np.all(
            np.isfinite(arr) & (arr == np.round(arr))
        ):
            raise BadInputError(f"The {name} must be whole-number indices; got dtype {arr.dtype}.")
    return arr.astype(np.int64)


def _check_indices(idx, width: int, n: int, name: str, item: str, what: str) -> None:
    a = np.asarray(idx)
    if a.size == 0:
        return
    if a.ndim != 2 or a.shape[1] != width:
        raise BadInputError(
            f"The {what}'s {name} must be an (m, {width}) array of vertex indices; "
            f"got shape {a.shape}."
            + (" Triangulate polygons first." if width == 3 and a.ndim == 2 else "")
        )
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= n:
        row = int(np.flatnonzero(((a < 0) | (a >= n)).any(axis=1))[0])
        raise BadInputError(
            f"The {what}'s {item} {row} refers to vertex {a[row].tolist()}, but there are only "
            f"{n} vertices (valid indices 0..{n - 1}). The file or mesh data is corrupt."
        )
