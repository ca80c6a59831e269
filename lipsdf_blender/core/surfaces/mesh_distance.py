"""Exact signed distance to a closed triangle mesh (offsets are measured with it).

A trained field is exact where it matters most, on its zero level set, but its slope away from
the surface is a little below 1 (about 0.9 for the presets): its level set ``f = D`` lies at a
true distance of about ``D / 0.9``, farther than asked (never nearer: the field is a distance
*bound*). :func:`.remesh.offset_surfaces` therefore extracts the zero level set once and measures
offsets from that surface with the exact distance, so an offset asked at ``D`` lies at ``D``
from the field's surface, up to the marching-cubes resolution.
"""

from __future__ import annotations

import igl
import numpy as np
import torch

from ..errors import BadInputError
from ..fields.detail import InputSurface


class MeshDistance:
    """Exact signed distance to a closed, outward-oriented triangle mesh (a DistanceField).

    Parameters
    ----------
    V : (n, 3) float
        Vertices, object units.
    F : (m, 3) int
        Triangles; the mesh should be closed (as extraction gives), so the sign from the
        winding number is exact.
    """

    def __init__(self, V, F):
        self.V = np.ascontiguousarray(V, dtype=np.float64)
        self.F = np.ascontiguousarray(F, dtype=np.int64)
        if len(self.F) == 0:
            raise BadInputError("the surface is empty; there is nothing to offset from")
        self.surface = InputSurface(self.V, self.F)
        self.tree = self.surface.tree

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Signed distances at ``x (n, 3)``; negative inside."""
        d = self.surface.signed_distance(x.detach().cpu().double().numpy())
        return torch.from_numpy(d).to(dtype=x.dtype, device=x.device)

    def value_and_gradient(self, P) -> tuple[np.ndarray, np.ndarray]:
        """Exact signed distances and their gradients, from the closest points.

        Parameters
        ----------
        P : (n, 3) float
            Query points, object units.

        Returns
        -------
        d : (n,) float64
            Signed distances (negative inside), object units.
        g : (n, 3) float64
            Unit gradients ``sign * (P - C) / |P - C|`` with ``C`` the closest point on the
            mesh: they point away from the surface outside and towards it inside. A point on
            the surface (``|P - C|`` below ``1e-12`` of the mesh's size) gets its closest
            face's outward normal.

        Examples
        --------
        >>> from lipsdf_blender.core.inputs.primitives import icosphere
        >>> d, g = MeshDistance(*icosphere(1.0, 3)).value_and_gradient(np.array([[2.0, 0, 0]]))
        """
        P = np.ascontiguousarray(np.asarray(P, dtype=np.float64).reshape(-1, 3))
        sq, face, C = self.tree.squared_distance(self.V, self.F, P)
        inside = self.surface.winding(P) > 0.5
        sign = np.where(inside, -1.0, 1.0)
        d = np.sqrt(np.maximum(sq, 0.0))
        diff = P - C
        size = max(float(np.linalg.norm(self.V.max(axis=0) - self.V.min(axis=0))), 1e-300)
        on = d <= 1e-12 * size
        g = np.zeros_like(P)
        g[~on] = sign[~on, None] * diff[~on] / d[~on, None]
        if on.any():
            tri = self.V[self.F[np.asarray(face, dtype=np.int64)[on]]]
            nrm = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            g[on] = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-300)
        return sign * d, g

    def surface_normals(self, P) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Closest points on the mesh and two outward normals there: smooth and flat.

        The smooth normal is interpolated (barycentric) from angle-weighted vertex normals,
        so it varies over a finely tessellated curved surface as the surface does instead of
        jumping at every edge; the flat one is the closest face's, right on large flat faces
        whose corners' normals are tilted by a sharp crease (a box).

        Parameters
        ----------
        P : (n, 3) float
            Query points, object units.

        Returns
        -------
        C : (n, 3) float64
            Closest points on the mesh.
        N : (n, 3) float64
            Unit smooth outward normals at ``C``.
        N_face : (n, 3) float64
            Unit outward normals of the closest faces.
        """
        P = np.ascontiguousarray(np.asarray(P, dtype=np.float64).reshape(-1, 3))
        if getattr(self, "_vertex_normals", None) is None:
            kind = igl.PER_VERTEX_NORMALS_WEIGHTING_TYPE_ANGLE
            self._vertex_normals = np.nan_to_num(igl.per_vertex_normals(self.V, self.F, kind))
        _, face, C = self.tree.squared_distance(self.V, self.F, P)
        tri = self.F[np.asarray(face, dtype=np.int64)]
        T = self.V[tri]
        B = igl.barycentric_coordinates(C, T[:, 0].copy(), T[:, 1].copy(), T[:, 2].copy())
        N = np.einsum("ij,ijk->ik", np.nan_to_num(B), self._vertex_normals[tri])
        Nf = np.cross(T[:, 1] - T[:, 0], T[:, 2] - T[:, 0])
        unit = [M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-300) for M in (N, Nf)]
        return C, unit[0], unit[1]

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.V.min(axis=0), self.V.max(axis=0)
