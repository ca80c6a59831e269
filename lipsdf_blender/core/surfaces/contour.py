"""Sharp creases and corners: dual contouring on the sparse grid that extraction built.

Marching cubes puts every vertex on a cell edge, so a crease that runs through a cell is cut off
by a chamfer one cell wide, and a cube's corner becomes a small triangle. Dual contouring
(Ju et al. 2002) puts one vertex inside each cell that the surface crosses, where the tangent
planes at the cell's edge crossings meet (a least-squares point, the QEF), and joins the four
cells around every crossed edge by a quad. On a flat face the planes agree and the vertex lies
on the face; on a crease two families of planes meet on the crease line; at a corner, three
planes meet at the corner.

The tangent planes come from the field itself: the crossing on each edge is interpolated from
the corner values, and its normal is the field's central-difference gradient there. With the
input's detail (:mod:`.detail`) those are the input's own faces: fields that know them say so
(``input_normals``: the nearest triangle's normal, a cloud's IMLS normal, turned to point
the way the field grows along the edge), which saves six evaluations a crossing.

Where a cell holds two or more sheets of surface (a part thinner than a cell), one vertex per
cell would glue them together. As in manifold dual contouring (Schaefer et al. 2007) a cell gets
one vertex per sheet instead: the sheets are the connected pieces of marching cubes' own
triangulation of that cell's sign pattern (:func:`edge_components`), so the result has the
topology of the marching-cubes mesh. Extraction still checks the result and keeps marching
cubes for a level where it is not a closed manifold.
"""

from __future__ import annotations

import numpy as np
import torch

from .cube import EDGE_AXIS, EDGE_SLOT, EDGES, edge_components

# Weight of the pull towards the crossings' mean: keeps the QEF solvable on flat parts.
_REGULARISE = 0.05


def _gradients(field, P: np.ndarray, step: float, batch: int, device, up=None) -> np.ndarray:
    """Unit gradients of ``field`` at ``P (k, 3)``.

    Where the field knows the input's own normal there (its ``input_normals(P, step)``, if it
    has one: a line, either sign) and ``up (k, 3)`` says which way along the grid edge the
    field grows, that normal turned to agree with ``up``; central differences elsewhere.
    """
    known = getattr(field, "input_normals", None)
    if known is None or up is None:
        return _differences(field, P, step, batch, device)
    G, ok = known(P, step)
    along = np.einsum("kd,kd->k", G, up)
    G *= np.where(along < 0, -1.0, 1.0)[:, None]
    # a normal across the edge says nothing of the field's sign along it
    ok &= np.abs(along) > 1e-3 * np.linalg.norm(up, axis=1)
    if not ok.all():
        G[~ok] = _differences(field, P[~ok], step, batch, device)
    return G


def _differences(field, P: np.ndarray, step: float, batch: int, device) -> np.ndarray:
    """Unit central-difference gradients of ``field`` at ``P (k, 3)``."""
    G = np.empty_like(P)
    eye = np.eye(3) * step
    for a in range(0, len(P), batch):
        p = P[a : a + batch]
        X = np.concatenate([p + e for e in eye] + [p - e for e in eye])
        x = torch.from_numpy(X.astype(np.float32))
        if device is not None:
            x = x.to(device)
        with torch.no_grad():
            v = field(x).reshape(-1).to("cpu", torch.float64).numpy()
        v = v.reshape(6, len(p))
        G[a : a + batch] = (v[:3] - v[3:]).T
    n = np.linalg.norm(G, axis=1, keepdims=True)
    return np.divide(G, n, out=np.zeros_like(G), where=n > 0)


def dual_contour(
    field, lo, h: float, n_cells, positions, values, cells_gi, level: float, batch: int, device
):
    """Dual contouring of one level on extraction's sparse grid.

    Parameters
    ----------
    field : DistanceField
        Gives the normals (central differences of ``step = h / 20``).
    lo : (3,) float
        Grid origin; ``h`` the cell side; ``n_cells`` cells per axis.
    positions : (K, 3) float
        Corner positions; ``values`` ``(K,)`` the corner values prepared for this level (no
        value equal to the level, grid-boundary corners outside).
    cells_gi : (C, 8) int
        The crossing cells' corners as indices into ``positions``, in
        ``extract.CUBE_CORNERS`` order.
    level : float

    Returns
    -------
    (V, F) or None
        An outward-oriented mesh (closed unless a cell holds an ambiguous sheet: the caller
        checks), or ``None`` where a neighbour cell of a crossed edge is missing.
    """
    C = len(cells_gi)
    if C == 0:
        return None
    inside = values < level
    # Cell keys from their first corner: integer coordinates i + X (j + Y k).
    stride = np.asarray(n_cells, dtype=np.int64) + 1
    ijk0 = np.rint((positions[cells_gi[:, 0]] - lo) / h).astype(np.int64)
    ckey = ijk0[:, 0] + stride[0] * (ijk0[:, 1] + stride[1] * ijk0[:, 2])
    order = np.argsort(ckey)
    ckey_sorted = ckey[order]

    # Crossed edges of every cell, and the unique grid edges among them.
    a_idx = cells_gi[:, EDGES[:, 0]]  # (C, 12)
    b_idx = cells_gi[:, EDGES[:, 1]]
    crossed = inside[a_idx] != inside[b_idx]
    cell_of, slot = np.nonzero(crossed)
    ea, eb = a_idx[cell_of, slot], b_idx[cell_of, slot]
    axis = EDGE_AXIS[slot]
    ekey = ea * 3 + axis
    uniq, inv = np.unique(ekey, return_inverse=True)
    ua, uaxis = uniq // 3, uniq % 3
    first = np.zeros(len(uniq), dtype=np.int64)
    first[inv] = np.arange(len(inv))
    ub = eb[first]
    va, vb = values[ua], values[ub]
    t = (level - va) / (vb - va)
    Pe = positions[ua] + t[:, None] * (positions[ub] - positions[ua])
    up = (positions[ub] - positions[ua]) * np.sign(vb - va)[:, None]
    Ne = _gradients(field, Pe, h / 20.0, batch, device, up)

    # One vertex per sheet of each cell (usually one sheet).
    bits = (1 << np.arange(8, dtype=np.int64))[None, :]
    cfg = np.sum(inside[cells_gi] * bits, axis=1)
    table = edge_components()
    sheet = table[cfg[cell_of], slot]
    vkey = cell_of * 4 + sheet
    vid_of = np.full(C * 4, -1, dtype=np.int64)
    used = np.unique(vkey)
    vid_of[used] = np.arange(len(used))
    vid = vid_of[vkey]
    nv = len(used)
    vcell = used // 4

    # Per sheet: least squares for the point nearest to all its tangent planes.
    p, nrm = Pe[inv], Ne[inv]
    A = np.zeros((nv, 3, 3))
    rhs = np.zeros((nv, 3))
    mass = np.zeros((nv, 3))
    count = np.zeros(nv)
    np.add.at(A, vid, nrm[:, :, None] * nrm[:, None, :])
    np.add.at(rhs, vid, nrm * np.sum(nrm * p, axis=1, keepdims=True))
    np.add.at(mass, vid, p)
    np.add.at(count, vid, 1.0)
    mass /= count[:, None]
    lam = _REGULARISE * count
    A += lam[:, None, None] * np.eye(3)
    rhs += lam[:, None] * mass
    X = np.linalg.solve(A, rhs[:, :, None])[:, :, 0]
    # Keep each vertex in its own cell; a point outside it means the planes did not meet
    # there, and the crossings' mean is the safe choice.
    cmin = lo + ijk0[vcell] * h
    outside = np.any((X < cmin - 1e-9) | (X > cmin + h + 1e-9), axis=1)
    X[outside] = np.clip(X[outside], cmin[outside], cmin[outside] + h)

    # One quad per crossed edge, from the four cells around it.
    e_ijk = np.rint((positions[ua] - lo) / h).astype(np.int64)
    u_ax, v_ax = (uaxis + 1) % 3, (uaxis + 2) % 3
    quad = np.empty((len(uniq), 4), dtype=np.int64)
    rows = np.arange(len(uniq))
    for q, (du, dv) in enumerate(((0, 0), (-1, 0), (-1, -1), (0, -1))):
        c = e_ijk.copy()
        c[rows, u_ax] += du
        c[rows, v_ax] += dv
        k = c[:, 0] + stride[0] * (c[:, 1] + stride[1] * c[:, 2])
        pos = np.searchsorted(ckey_sorted, k)
        pos = np.minimum(pos, C - 1)
        if np.any(ckey_sorted[pos] != k) or np.any(c < 0):
            return None  # a neighbour cell is missing: cannot close the surface here
        cell = order[pos]
        # The sheet of that cell this edge belongs to: the edge sits at the cell's low side
        # along u (v) when the cell's offset is 0, at its high side when it is -1.
        sl = EDGE_SLOT[uaxis, -du, -dv]
        quad[:, q] = vid_of[cell * 4 + table[cfg[cell], sl]]
    if np.any(quad < 0):
        return None
    # Counter-clockwise around +axis; the outward normal points from inside to outside.
    flip = ~inside[ua]
    quad[flip] = quad[flip][:, ::-1]
    # Split each quad along the diagonal whose two triangles agree best (creases follow it).
    q0, q1, q2, q3 = (X[quad[:, i]] for i in range(4))
    s1 = _agreement(q0, q1, q2, q3)
    s2 = _agreement(q1, q2, q3, q0)
    use1 = s1 >= s2
    F = np.concatenate(
        [
            np.where(use1[:, None], quad[:, [0, 1, 2]], quad[:, [1, 2, 3]]),
            np.where(use1[:, None], quad[:, [0, 2, 3]], quad[:, [1, 3, 0]]),
        ]
    )
    return X, F


def _agreement(a, b, c, d):
    """Cosine between the normals of triangles (a, b, c) and (a, c, d)."""
    n1 = np.cross(b - a, c - a)
    n2 = np.cross(c - a, d - a)
    den = np.linalg.norm(n1, axis=1) * np.linalg.norm(n2, axis=1)
    return np.divide(np.sum(n1 * n2, axis=1), den, out=np.full(len(a), -1.0), where=den > 0)
