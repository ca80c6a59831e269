"""Tables of the unit cube shared by extraction (:mod:`.extract`) and dual contouring
(:mod:`.contour`): corner order, children, edges, and marching cubes' sheets per sign pattern.

numpy only at import; :func:`edge_components` reads libigl's marching cubes once, on first use.
"""

from __future__ import annotations

import functools

import numpy as np

#: Corner offsets of a cube in the order ``igl.marching_cubes`` expects for its ``GI`` rows
#: (Paul Bourke's convention: the bottom face counter-clockwise, then the top face). Checked
#: in ``tests/test_extract.py``: with any other order the cut points leave the cube's edges.
CUBE_CORNERS = np.array(
    [
        [0, 0, 0],
        [1, 0, 0],
        [1, 1, 0],
        [0, 1, 0],
        [0, 0, 1],
        [1, 0, 1],
        [1, 1, 1],
        [0, 1, 1],
    ],
    dtype=np.int64,
)

#: The 8 children of a cell split in two along each axis (offsets in half cells).
CHILDREN = np.array([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)], dtype=np.int64)
#: The 27 corners of a cell's 8 children (offsets in half cells).
LATTICE = np.array(
    [[i, j, k] for k in (0, 1, 2) for j in (0, 1, 2) for i in (0, 1, 2)], dtype=np.int64
)

# The 12 edges of a cube as pairs of corner slots (:data:`CUBE_CORNERS` order) and their
# axis: slot 0 is the corner with the smaller coordinate.
EDGES = np.array(
    [
        [0, 1], [3, 2], [4, 5], [7, 6],  # along x
        [0, 3], [1, 2], [4, 7], [5, 6],  # along y
        [0, 4], [1, 5], [2, 6], [3, 7],  # along z
    ]
)  # fmt: skip
EDGE_AXIS = np.repeat(np.arange(3), 4)
# Slot of the edge along axis a at (pu, pv) in {0, 1}^2 of a cell, with u = a + 1, v = a + 2
# (mod 3), matching EDGES.
EDGE_SLOT = np.array(
    [
        [[0, 2], [1, 3]],  # x: u = y, v = z
        [[4, 5], [6, 7]],  # y: u = z, v = x
        [[8, 11], [9, 10]],  # z: u = x, v = y
    ]
)  # EDGE_SLOT[a, pu, pv]


@functools.cache
def edge_components() -> np.ndarray:
    """``(256, 12)``: for each sign pattern of a cube's corners (bit i: corner i inside), the
    sheet of marching cubes' surface each crossed edge belongs to (0..3), -1 if uncrossed.

    Read off libigl's own marching cubes on one cube per pattern, so the sheets are exactly
    the ones the marching-cubes mesh would have.
    """
    import igl
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    corners = CUBE_CORNERS.astype(np.float64)
    mids = 0.5 * (corners[EDGES[:, 0]] + corners[EDGES[:, 1]])
    table = np.full((256, 12), -1, dtype=np.int64)
    gi = np.arange(8, dtype=np.int64)[None]
    for cfg in range(1, 255):
        values = np.where((cfg >> np.arange(8)) & 1, -1.0, 1.0)
        V, F = igl.marching_cubes(values, corners, gi, 0.0)[:2]
        edge = np.argmin(np.linalg.norm(V[:, None, :] - mids[None], axis=2), axis=1)
        e = np.concatenate([F[:, [0, 1]], F[:, [1, 2]]])
        _, label = connected_components(
            coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(V), len(V))),
            directed=False,
        )
        table[cfg, edge] = label
    return table
