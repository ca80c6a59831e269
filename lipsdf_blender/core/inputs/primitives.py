"""Small test shapes made by our own code, as plain arrays.

Meshes are ``(V, F)`` with ``V (n,3) float64`` and ``F (m,3) int64``; closed ones are oriented
with outward normals (counter-clockwise seen from outside). Units are arbitrary (whatever the
caller passes as radius or size).

Example
-------
>>> V, F = icosphere(radius=2.0, subdivisions=1)
>>> V.shape, F.shape
((42, 3), (80, 3))
"""

from __future__ import annotations

import numpy as np

from ..types import Edges, Faces, Points


def icosphere(
    radius: float = 1.0, subdivisions: int = 2, center=(0.0, 0.0, 0.0)
) -> tuple[Points, Faces]:
    """Closed triangulated sphere made by subdividing an icosahedron.

    Parameters
    ----------
    radius : float
        Sphere radius; every vertex lies exactly at this distance from ``center``.
    subdivisions : int
        Number of 1-to-4 splits; gives ``10 * 4**s + 2`` vertices and ``20 * 4**s`` faces.
    center : (3,) float

    Returns
    -------
    V : (n, 3) float64
    F : (m, 3) int64
        Outward oriented.
    """
    t = (1.0 + 5.0**0.5) / 2.0
    V = np.array(
        [
            [-1, t, 0],
            [1, t, 0],
            [-1, -t, 0],
            [1, -t, 0],
            [0, -1, t],
            [0, 1, t],
            [0, -1, -t],
            [0, 1, -t],
            [t, 0, -1],
            [t, 0, 1],
            [-t, 0, -1],
            [-t, 0, 1],
        ],
        dtype=np.float64,
    )
    F = np.array(
        [
            [0, 11, 5],
            [0, 5, 1],
            [0, 1, 7],
            [0, 7, 10],
            [0, 10, 11],
            [1, 5, 9],
            [5, 11, 4],
            [11, 10, 2],
            [10, 7, 6],
            [7, 1, 8],
            [3, 9, 4],
            [3, 4, 2],
            [3, 2, 6],
            [3, 6, 8],
            [3, 8, 9],
            [4, 9, 5],
            [2, 4, 11],
            [6, 2, 10],
            [8, 6, 7],
            [9, 8, 1],
        ],
        dtype=np.int64,
    )
    for _ in range(int(subdivisions)):
        V, F = _subdivide(V, F)
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    return V * float(radius) + np.asarray(center, dtype=np.float64), F


def _subdivide(V: Points, F: Faces) -> tuple[Points, Faces]:
    """Split each triangle into four at edge midpoints (shared midpoints are shared vertices)."""
    e = np.concatenate([F[:, [1, 2]], F[:, [2, 0]], F[:, [0, 1]]])  # opposite corners 0, 1, 2
    uniq, inv = np.unique(np.sort(e, axis=1), axis=0, return_inverse=True)
    mid = len(V) + inv.reshape(3, -1).T  # (m, 3): midpoint opposite each corner
    V = np.vstack([V, 0.5 * (V[uniq[:, 0]] + V[uniq[:, 1]])])
    a, b, c = F.T
    ma, mb, mc = mid.T
    F = np.concatenate(
        [
            np.stack([a, mc, mb], 1),
            np.stack([b, ma, mc], 1),
            np.stack([c, mb, ma], 1),
            np.stack([ma, mb, mc], 1),
        ]
    )
    return V, F


def box_mesh(half_size=1.0, center=(0.0, 0.0, 0.0)) -> tuple[Points, Faces]:
    """Closed axis-aligned box with 8 vertices and 12 outward-oriented triangles.

    Parameters
    ----------
    half_size : float or (3,) float
        Half the edge length along x, y, z.
    center : (3,) float

    Returns
    -------
    V : (8, 3) float64
    F : (12, 3) int64
    """
    h = np.broadcast_to(np.asarray(half_size, dtype=np.float64), (3,))
    corners = np.array([[(i >> 0) & 1, (i >> 1) & 1, (i >> 2) & 1] for i in range(8)], float)
    V = (corners * 2.0 - 1.0) * h + np.asarray(center, dtype=np.float64)
    # vertex index = x + 2y + 4z; each quad listed counter-clockwise seen from outside
    quads = [
        (0, 4, 6, 2),  # -x
        (1, 3, 7, 5),  # +x
        (0, 1, 5, 4),  # -y
        (2, 6, 7, 3),  # +y
        (0, 2, 3, 1),  # -z
        (4, 5, 7, 6),  # +z
    ]
    F = np.array([[q[0], q[1], q[2]] for q in quads] + [[q[0], q[2], q[3]] for q in quads])
    return V, F.astype(np.int64)


def torus_mesh(
    R: float = 1.0, r: float = 0.25, n_major: int = 48, n_minor: int = 24
) -> tuple[Points, Faces]:
    """Closed genus-1 torus around the z axis, centred at the origin.

    Parameters
    ----------
    R : float
        Distance from the centre to the middle of the tube.
    r : float
        Tube radius (``r < R``).
    n_major, n_minor : int
        Segments around the z axis and around the tube.

    Returns
    -------
    V : (n_major * n_minor, 3) float64
    F : (2 * n_major * n_minor, 3) int64
        Outward oriented.
    """
    u = np.linspace(0.0, 2.0 * np.pi, n_major, endpoint=False)
    v = np.linspace(0.0, 2.0 * np.pi, n_minor, endpoint=False)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    ring = R + r * np.cos(vv)
    V = np.stack([ring * np.cos(uu), ring * np.sin(uu), r * np.sin(vv)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(n_major), np.arange(n_minor), indexing="ij")
    i2, j2 = (i + 1) % n_major, (j + 1) % n_minor
    a, b = i * n_minor + j, i2 * n_minor + j
    c, d = i2 * n_minor + j2, i * n_minor + j2
    F = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    return V, F.astype(np.int64)


def torus_points(n: int = 2000, R: float = 1.0, r: float = 0.25, seed: int = 0) -> Points:
    """Points drawn uniformly (by area) on the surface of :func:`torus_mesh`'s torus.

    Parameters
    ----------
    n : int
        Number of points.
    R, r : float
        Major and tube radius.
    seed : int

    Returns
    -------
    P : (n, 3) float64
        No normals: the outward normal at ``p`` is ``p - c`` normalised, with ``c`` the
        nearest point of the tube's centre circle.
    """
    rng = np.random.default_rng(seed)
    u = rng.uniform(0.0, 2.0 * np.pi, n)
    # the area element is proportional to R + r cos(v): rejection-sample v from it
    v = np.empty(0)
    while len(v) < n:
        cand = rng.uniform(0.0, 2.0 * np.pi, 2 * n)
        keep = rng.uniform(0.0, R + r, 2 * n) < R + r * np.cos(cand)
        v = np.concatenate([v, cand[keep]])
    v = v[:n]
    ring = R + r * np.cos(v)
    return np.stack([ring * np.cos(u), ring * np.sin(u), r * np.sin(v)], -1)


def curve_circle(n: int = 64, radius: float = 1.0) -> tuple[Points, Edges]:
    """Closed polyline approximating a circle in the xy plane around the origin.

    Returns
    -------
    V : (n, 3) float64
    E : (n, 2) int64
        ``E[i] = (i, i + 1 mod n)``.
    """
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    V = np.stack([radius * np.cos(t), radius * np.sin(t), np.zeros(n)], -1)
    E = np.stack([np.arange(n), (np.arange(n) + 1) % n], -1).astype(np.int64)
    return V, E


def open_monkey_like(subdivisions: int = 3) -> tuple[Points, Faces]:
    """A Suzanne-like awkward input: open, several parts, self-intersecting.

    A unit-radius head cap (a sphere with its bottom cut off and a "mouth" hole) plus two
    closed eye spheres (radius 0.3) that poke through the front of the cap, and two flat,
    open ear discs at the sides. Parts are not connected and the eyes intersect the head,
    like Blender's Suzanne. The cap's normals point outward.

    Returns
    -------
    V : (n, 3) float64
    F : (m, 3) int64
        Has boundary edges (the cut, the mouth and the ears' rims).
    """
    V, F = icosphere(1.0, subdivisions)
    c = V[F].mean(axis=1)
    mouth = np.linalg.norm(c - np.array([0.0, -0.85, -0.45]), axis=1) < 0.3
    cut = c[:, 2] < -0.6
    head_V, head_F = _compact(V, F[~(mouth | cut)])
    parts = [(head_V, head_F)]
    for x in (-0.35, 0.35):
        parts.append(icosphere(0.3, max(subdivisions - 1, 0), (x, -0.9, 0.3)))
    for x in (-1.15, 1.15):
        parts.append(_disc(0.35, 16, (x, 0.0, 0.2), normal_x=np.sign(x)))
    Vs, Fs, off = [], [], 0
    for Vp, Fp in parts:
        Vs.append(Vp)
        Fs.append(Fp + off)
        off += len(Vp)
    return np.vstack(Vs), np.vstack(Fs).astype(np.int64)


def _compact(V: Points, F: Faces) -> tuple[Points, Faces]:
    used, inv = np.unique(F, return_inverse=True)
    return V[used], inv.reshape(F.shape).astype(np.int64)


def _disc(radius: float, n: int, center, normal_x: float) -> tuple[Points, Faces]:
    """Triangle fan in a plane x = const, facing ``sign(normal_x)`` along x."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    rim = np.stack([np.zeros(n), radius * np.cos(t), radius * np.sin(t)], -1)
    V = np.vstack([[0.0, 0.0, 0.0], rim]) + np.asarray(center, dtype=np.float64)
    i = np.arange(n)
    F = np.stack([np.zeros(n, int), 1 + i, 1 + (i + 1) % n], -1)
    if normal_x < 0:
        F = F[:, ::-1]
    return V, F.astype(np.int64)
