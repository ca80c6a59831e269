"""The side-by-side report (metrics.surface_report, thickness_report) on known answers.

Numpy and libigl only: the benchmark's peers (bpy, pymeshfix) are not needed here.
"""

from __future__ import annotations

import numpy as np
import pytest

from lipsdf_blender.core import metrics
from lipsdf_blender.core.primitives import box_mesh, curve_circle, icosphere


def _join(*meshes):
    Vs, Fs, off = [], [], 0
    for V, F in meshes:
        Vs.append(V)
        Fs.append(F + off)
        off += len(V)
    return np.vstack(Vs), np.vstack(Fs)


def test_a_slightly_larger_sphere():
    V, F = icosphere(1.0, 4)
    Vo, Fo = icosphere(1.01, 4)
    r = metrics.surface_report(V, F, Vo, Fo, n=20000)
    diag = 2.0 * np.sqrt(3.0) * np.abs(V).max(axis=0).max()  # ~ the box of the unit sphere
    gap = 100.0 * 0.01 / diag
    assert r["chamfer_percent"] == pytest.approx(gap, rel=0.05)
    assert r["hausdorff_in_out_percent"] == pytest.approx(gap, rel=0.05)
    assert r["normal_error_mean_deg"] < 0.5 and r["normal_error_p95_deg"] < 1.0
    assert r["iou"] == pytest.approx(1.0 / 1.01**3, abs=0.01)
    assert r["watertight"] and r["components"] == 1 and r["self_intersections"] == 0
    assert r["faces"] == len(Fo) and r["input_normals_flipped_percent"] == 0.0


def test_an_inverted_result_is_180_degrees_off_and_empty_inside():
    V, F = icosphere(1.0, 3)
    r = metrics.surface_report(V, F, V, F[:, ::-1], n=5000)
    assert r["chamfer_percent"] < 1e-9
    assert r["normal_error_mean_deg"] > 179.0
    assert r["iou"] == 0.0


def test_input_orientation_comes_from_its_solid():
    """An input with a part inside out is judged by its outward normals, not its own."""
    a, b = icosphere(1.0, 3), icosphere(1.0, 3, center=(3.0, 0.0, 0.0))
    good = _join(a, b)
    bad = _join(a, (b[0], b[1][:, ::-1]))
    r = metrics.surface_report(*bad, *good, n=5000)
    assert r["input_normals_flipped_percent"] == pytest.approx(50, abs=3)
    assert r["normal_error_p95_deg"] < 1e-3


def test_topology_columns():
    V, F = box_mesh(1.0)
    assert not metrics.surface_report(V, F, V, F[2:], n=2000)["watertight"]  # a face missing
    two = _join(icosphere(1.0, 2), icosphere(1.0, 2, center=(3.0, 0.0, 0.0)))
    r = metrics.surface_report(*two, *two, n=2000)
    assert r["components"] == 2 and r["watertight"] and r["self_intersections"] == 0


def test_self_intersections():
    assert metrics.self_intersections(*icosphere(1.0, 3)) == 0
    assert metrics.self_intersections(*box_mesh(1.0)) == 0
    # an unwelded copy of a clean mesh (each face its own corners) is still clean
    V, F = icosphere(1.0, 2)
    assert (
        metrics.self_intersections(V[F].reshape(-1, 3), np.arange(3 * len(F)).reshape(-1, 3)) == 0
    )
    soup = _join(box_mesh(1.0), box_mesh(1.0, center=(0.5, 0.5, 0.5)))
    assert metrics.self_intersections(*soup) > 0
    apart = _join(box_mesh(1.0), box_mesh(1.0, center=(2.0 + 1e-6, 0.0, 0.0)))
    assert metrics.self_intersections(*apart) == 0
    # coplanar overlap counts; two boxes that only share a face plane do not cross
    flat = _join(box_mesh([1.0, 1.0, 0.0]), box_mesh([1.0, 1.0, 0.0], center=(0.5, 0.5, 0.0)))
    assert metrics.self_intersections(*flat) > 0


def test_triangle_cross_matches_known_pairs():
    A = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]] * 3)
    B = np.array(
        [
            [[0.2, 0.2, -1], [0.2, 0.2, 1], [0.3, 0.25, 1]],  # pierces A
            [[2.0, 2.0, -1], [2.0, 2.0, 1], [2.1, 2.05, 1]],  # misses A's plane region
            [[1.0, 0.0, 0.0], [1.0, 0.0, 1], [2.0, 0.0, 1]],  # touches A at a corner only
        ]
    )
    np.testing.assert_array_equal(metrics._triangles_cross(A, B, 1e-12), [True, False, False])


def test_thickness_report_of_exact_shells():
    # a tube of radius T around a circle: the torus of the primitives
    from lipsdf_blender.core.primitives import torus_mesh

    T = 0.05
    Vc, E = curve_circle(256, 1.0)
    Vt, Ft = torus_mesh(1.0, T, 256, 64)
    r = metrics.thickness_report(Vc, E, Vt, Ft, T, n=20000)
    assert r["thickness_error_percent"] == pytest.approx(0.0, abs=1.0)
    assert r["p95_thickness_error"] < 0.02 * T
    assert r["input_inside_percent"] == 100.0 and r["within_bound"]
    assert r["watertight"] and r["components"] == 1
    # a thicker tube is measured thicker
    Vt, Ft = torus_mesh(1.0, 1.24 * T, 256, 64)
    r = metrics.thickness_report(Vc, E, Vt, Ft, T, n=20000)
    assert r["thickness_error_percent"] == pytest.approx(24.0, abs=1.5)
    # a square sheet in a box of half-height T: the faces at T, the rim farther
    Vs = np.array([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]])
    Fs = np.array([[0, 1, 2], [0, 2, 3]])
    Vb, Fb = box_mesh([1.0, 1.0, T])
    r = metrics.thickness_report(Vs, Fs, Vb, Fb, T, n=20000)
    assert r["median_thickness"] == pytest.approx(T, rel=1e-6)
    assert r["input_inside_percent"] > 99.0 and r["within_bound"]
    # a result that lost half the sheet: the input is not inside and the bound fails
    Vh, Fh = box_mesh([0.5, 1.0, T], center=(-0.5, 0.0, 0.0))
    r = metrics.thickness_report(Vs, Fs, Vh, Fh, T, n=20000)
    assert r["input_inside_percent"] < 60.0 and not r["within_bound"]
