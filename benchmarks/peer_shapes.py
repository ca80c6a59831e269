"""Inputs made in code for bench_peers.py: creases, thin parts, a soup, a sheet and a curve.

Each function returns plain arrays: ``(V (n,3) float64, F (m,3) int64)`` for meshes (closed
ones outward oriented) or ``(V, E (k,2) int64)`` for the curve. Sizes are in arbitrary units
of about 2.
"""

from __future__ import annotations

import numpy as np

from lipsdf_blender.core.inputs.primitives import box_mesh, curve_circle


def triangulate_polygon(P) -> np.ndarray:
    """Ear-clipping triangulation of a simple polygon ``P (k,2)`` (no repeated or collinear
    consecutive corners).

    Returns
    -------
    (k - 2, 3) int64
        Counter-clockwise triangles (seen from +z) indexing ``P``.
    """
    P = np.asarray(P, dtype=np.float64)
    x, y = P[:, 0], P[:, 1]
    ccw = (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() > 0
    idx = list(range(len(P))) if ccw else list(range(len(P)))[::-1]

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    tris = []
    while len(idx) > 3:
        for i in range(len(idx)):
            a, b, c = idx[i - 1], idx[i], idx[(i + 1) % len(idx)]
            if cross(P[a], P[b], P[c]) <= 0:
                continue  # reflex corner
            inside = any(
                cross(P[a], P[b], P[j]) >= 0
                and cross(P[b], P[c], P[j]) >= 0
                and cross(P[c], P[a], P[j]) >= 0
                for j in idx
                if j not in (a, b, c)
            )
            if not inside:
                tris.append((a, b, c))
                idx.pop(i)
                break
        else:
            raise ValueError("triangulate_polygon: not a simple polygon")
    tris.append(tuple(idx))
    return np.array(tris, dtype=np.int64)


def extrude_polygon(P, depth: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed prism: the polygon ``P (k,2)`` in the xz plane, swept along y over ``depth``."""
    P = np.asarray(P, dtype=np.float64)
    x, z = P[:, 0], P[:, 1]
    if (x * np.roll(z, -1) - np.roll(x, -1) * z).sum() < 0:
        P = P[::-1]
    k = len(P)
    caps = triangulate_polygon(P)  # ccw in (x, z): its normal is -y
    front = np.stack([P[:, 0], np.full(k, -depth / 2), P[:, 1]], 1)
    back = front + [0.0, depth, 0.0]
    i = np.arange(k)
    j = (i + 1) % k
    sides = np.concatenate([np.stack([i, i + k, j + k], 1), np.stack([i, j + k, j], 1)])
    F = np.concatenate([caps, caps[:, ::-1] + k, sides])
    return np.vstack([front, back]), F.astype(np.int64)


def cube() -> tuple[np.ndarray, np.ndarray]:
    """A cube of side 2: 12 triangles, 8 corners and 12 sharp edges."""
    return box_mesh(1.0)


def thin_fin() -> tuple[np.ndarray, np.ndarray]:
    """A 2 x 1.5 x 1 block with a wall 0.02 thick (1 % of its size) and 0.8 high on top."""
    t = 0.01
    P = [(-1, 0), (1, 0), (1, 1), (t, 1), (t, 1.8), (-t, 1.8), (-t, 1), (-1, 1)]
    return extrude_polygon(P, 1.5)


def l_bracket() -> tuple[np.ndarray, np.ndarray]:
    """An L-shaped bracket: legs 2 and 1.5 long, 0.25 thick, 1 deep (one concave edge)."""
    P = [(0, 0), (2, 0), (2, 0.25), (0.25, 0.25), (0.25, 1.5), (0, 1.5)]
    return extrude_polygon(P, 1.0)


def stepped_block() -> tuple[np.ndarray, np.ndarray]:
    """A CAD-like block of four steps, each 0.5 wide and 0.3 high, 1.2 deep."""
    P = [(0, 0), (2, 0)]
    for s in range(4, 0, -1):
        P += [(0.5 * s, 0.3 * (5 - s)), (0.5 * (s - 1), 0.3 * (5 - s))]
    return extrude_polygon(P, 1.2)


def _open_box(half, center, missing: int):
    """``box_mesh`` without its face number ``missing`` (0..5: -x, +x, -y, +y, -z, +z)."""
    V, F = box_mesh(half, center)
    keep = np.ones(12, dtype=bool)
    keep[[missing, missing + 6]] = False
    return V, F[keep]


def _open_cylinder(radius, height, center, n=48):
    """A tube around z without caps."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    ring = np.stack([radius * np.cos(t), radius * np.sin(t)], 1)
    V = np.vstack(
        [
            np.column_stack([ring, np.full(n, -height / 2)]),
            np.column_stack([ring, np.full(n, height / 2)]),
        ]
    ) + np.asarray(center, dtype=np.float64)
    i = np.arange(n)
    j = (i + 1) % n
    F = np.concatenate([np.stack([i, j, j + n], 1), np.stack([i, j + n, i + n], 1)])
    return V, F.astype(np.int64)


def open_soup() -> tuple[np.ndarray, np.ndarray]:
    """Three open boxes (each missing one face) and an open tube, all intersecting: one soup."""
    parts = [
        _open_box([1.0, 0.6, 0.5], (0.0, 0.0, 0.0), missing=5),
        _open_box([0.4, 0.9, 0.4], (0.8, 0.3, 0.3), missing=1),
        _open_box([0.5, 0.5, 0.7], (-0.7, -0.2, 0.5), missing=2),
        _open_cylinder(0.3, 1.8, (0.1, 0.1, 0.2)),
    ]
    Vs, Fs, off = [], [], 0
    for V, F in parts:
        Vs.append(V)
        Fs.append(F + off)
        off += len(V)
    return np.vstack(Vs), np.vstack(Fs)


def sheet_outline() -> np.ndarray:
    """Outline (k,2) of a 2 x 0.6 plate with three legs 0.05 wide and 0.6 long below and eight
    teeth 0.15 high on top."""
    P = [(0.0, 0.0)]
    for x in (0.3, 0.975, 1.65):
        P += [(x, 0.0), (x, -0.6), (x + 0.05, -0.6), (x + 0.05, 0.0)]
    P += [(2.0, 0.0), (2.0, 0.6)]
    teeth = np.linspace(2.0, 0.0, 9)
    for a, b in zip(teeth[:-1], teeth[1:], strict=True):
        P += [((a + b) / 2, 0.75), (b, 0.6)]
    return np.array(P, dtype=np.float64)


def flat_sheet() -> tuple[np.ndarray, np.ndarray]:
    """An open flat sheet in the z = 0 plane: :func:`sheet_outline` triangulated."""
    P = sheet_outline()
    V = np.column_stack([P, np.zeros(len(P))])
    return V, triangulate_polygon(P)


def circle_curve() -> tuple[np.ndarray, np.ndarray]:
    """A closed polyline of 256 segments on the circle of radius 1 in the z = 0 plane."""
    return curve_circle(256, 1.0)


#: name -> (kind, generator); kind "mesh" is remeshed signed, "sheet" and "curve" unsigned
SHAPES = {
    "cube": ("mesh", cube),
    "thin-fin": ("mesh", thin_fin),
    "l-bracket": ("mesh", l_bracket),
    "stepped-block": ("mesh", stepped_block),
    "open-soup": ("mesh", open_soup),
    "sheet": ("sheet", flat_sheet),
    "circle": ("curve", circle_curve),
}
