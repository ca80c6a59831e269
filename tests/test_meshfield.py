"""Exact mesh distance and exact offsets."""

import numpy as np
import torch

from lipsdf_blender.core.fields.sdf import BoxField
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.surfaces import topology
from lipsdf_blender.core.surfaces.mesh_distance import MeshDistance
from lipsdf_blender.core.surfaces.remesh import offset_surfaces


def test_mesh_distance_matches_the_sphere():
    V, F = primitives.icosphere(1.0, 5)
    P = np.random.default_rng(0).uniform(-2, 2, size=(5000, 3))
    d = MeshDistance(V, F)(torch.from_numpy(P)).numpy()
    exact = np.linalg.norm(P, axis=1) - 1
    # The icosphere is a polyhedron inscribed in the sphere: it is at most ~0.1 % inside.
    assert np.abs(d - exact).max() < 2e-3
    assert np.all(np.sign(d[np.abs(exact) > 2e-3]) == np.sign(exact[np.abs(exact) > 2e-3]))


def test_exact_offsets_of_a_box_follow_the_rounded_box():
    box = BoxField(half_size=(0.5, 0.3, 0.2))
    res = offset_surfaces(box, [0.1, -0.1], resolution=96)
    outer, inner = res
    q = np.abs(outer.vertices) - np.array([0.5, 0.3, 0.2])
    d_out = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    # Exact away from the corners; there marching cubes cut the surface's sharp corners off by
    # up to a cell, and the offset is measured from that surface.
    h = outer.stats.cell_size
    assert np.abs(d_out - 0.1).max() < h
    assert np.median(np.abs(d_out - 0.1)) < 0.05 * h
    assert topology.is_watertight(outer.faces) and topology.is_watertight(inner.faces)
    lo, hi = inner.vertices.min(0), inner.vertices.max(0)
    np.testing.assert_allclose(hi - lo, [0.8, 0.4, 0.2], atol=0.02)
