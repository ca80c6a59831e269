"""The side-by-side report (reports.surface_report, thickness_report) on known answers.

Numpy and libigl only: the benchmark's peers (bpy, pymeshfix) are not needed here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lipsdf_blender.core.inputs.primitives import box_mesh, curve_circle, icosphere
from lipsdf_blender.core.surfaces import topology

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import reports  # noqa: E402


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
    r = reports.surface_report(V, F, Vo, Fo, n=20000)
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
    r = reports.surface_report(V, F, V, F[:, ::-1], n=5000)
    assert r["chamfer_percent"] < 1e-9
    assert r["normal_error_mean_deg"] > 179.0
    assert r["iou"] == 0.0


def test_input_orientation_comes_from_its_solid():
    """An input with a part inside out is judged by its outward normals, not its own."""
    a, b = icosphere(1.0, 3), icosphere(1.0, 3, center=(3.0, 0.0, 0.0))
    good = _join(a, b)
    bad = _join(a, (b[0], b[1][:, ::-1]))
    r = reports.surface_report(*bad, *good, n=5000)
    assert r["input_normals_flipped_percent"] == pytest.approx(50, abs=3)
    assert r["normal_error_p95_deg"] < 1e-3


def test_topology_columns():
    V, F = box_mesh(1.0)
    assert not reports.surface_report(V, F, V, F[2:], n=2000)["watertight"]  # a face missing
    two = _join(icosphere(1.0, 2), icosphere(1.0, 2, center=(3.0, 0.0, 0.0)))
    r = reports.surface_report(*two, *two, n=2000)
    assert r["components"] == 2 and r["watertight"] and r["self_intersections"] == 0


def test_self_intersections():
    assert topology.self_intersections(*icosphere(1.0, 3)) == 0
    assert topology.self_intersections(*box_mesh(1.0)) == 0
    # an unwelded copy of a clean mesh (each face its own corners) is still clean
    V, F = icosphere(1.0, 2)
    assert (
        topology.self_intersections(V[F].reshape(-1, 3), np.arange(3 * len(F)).reshape(-1, 3)) == 0
    )
    soup = _join(box_mesh(1.0), box_mesh(1.0, center=(0.5, 0.5, 0.5)))
    assert topology.self_intersections(*soup) > 0
    apart = _join(box_mesh(1.0), box_mesh(1.0, center=(2.0 + 1e-6, 0.0, 0.0)))
    assert topology.self_intersections(*apart) == 0
    # coplanar overlap counts; two boxes that only share a face plane do not cross
    flat = _join(box_mesh([1.0, 1.0, 0.0]), box_mesh([1.0, 1.0, 0.0], center=(0.5, 0.5, 0.0)))
    assert topology.self_intersections(*flat) > 0


def test_triangle_cross_matches_known_pairs():
    A = np.array([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]] * 3)
    B = np.array(
        [
            [[0.2, 0.2, -1], [0.2, 0.2, 1], [0.3, 0.25, 1]],  # pierces A
            [[2.0, 2.0, -1], [2.0, 2.0, 1], [2.1, 2.05, 1]],  # misses A's plane region
            [[1.0, 0.0, 0.0], [1.0, 0.0, 1], [2.0, 0.0, 1]],  # touches A at a corner only
        ]
    )
    np.testing.assert_array_equal(topology._triangles_cross(A, B, 1e-12), [True, False, False])


# Neighbouring faces of remeshes (dual contouring on flat stretches of the cow; marching
# cubes near grid corners of Suzanne) that an interval test without care for nearly parallel
# planes counted as crossing. Exact rational predicates: they neither cross nor touch. Each
# row: triangle A, triangle B, the eps self_intersections used (1e-9 of the mesh diagonal).
NEIGHBOURS = [
    (
        [
            [0.26440150772371457, -0.50360952444717, -0.1213378946799719],
            [0.2546088578819541, -0.5036095249112118, -0.1224012682630416],
            [0.25460885755110557, -0.49381687662103746, -0.12205989635074922],
        ],
        [
            [0.2644015075288423, -0.49381687611332914, -0.12099652399947665],
            [0.2546088574109177, -0.484024228269642, -0.12171852619041836],
            [0.26440150759899655, -0.48402422769438774, -0.12065515577620511],
        ],
        2.5874637851011335e-09,
    ),
    (
        [
            [0.21015520247084368, -0.4154756892064156, -0.11361375294049968],
            [0.21025575279613232, -0.42526833760443705, -0.11359109388816872],
            [0.20535942741178362, -0.4252683376287957, -0.11248769444998666],
        ],
        [
            [0.21005465215526983, -0.4056830408120063, -0.11363641273873185],
            [0.20525887712203508, -0.41547568923004735, -0.11251035333752343],
            [0.2051583272196525, -0.405683040827151, -0.11253301128206374],
        ],
        2.5874637851011335e-09,
    ),
    (
        [
            [-3.7660094417928196, 1.3214938176563018, 3.5764556554857183],
            [-3.7661160661815014, 1.3059809692882347, 3.5772970776204267],
            [-3.7661160661815014, 1.3212718422395482, 3.5764556554857183],
        ],
        [
            [-3.7661160661815014, 1.337006666024369, 3.5755897970074084],
            [-3.758558007388317, 1.337006666024369, 3.5764556554857183],
            [-3.7661160661815014, 1.3214938176563018, 3.576443440492719],
        ],
        3.7685788536406984e-09,
    ),
    (
        [
            [-2.6026524385764693, 1.2123942636344762, 3.3903014750689136],
            [-2.6026524385764693, 1.212903879079832, 3.3900017035854972],
            [-2.5871395902084027, 1.2002364050874508, 3.3903014750689136],
        ],
        [
            [-2.6026524385764693, 1.197391030711765, 3.3991268383249524],
            [-2.618165286944537, 1.212903879079832, 3.3971532202693395],
            [-2.6033026936169565, 1.212903879079832, 3.3903014750689136],
        ],
        3.7685788536406984e-09,
    ),
    (
        [
            [-1.190983237082364, 1.6472636333857107, 3.661500955711831],
            [-1.1915092281010538, 1.6472636333857107, 3.6540198973260543],
            [-1.2001140130832957, 1.6627764817537778, 3.669532745694121],
        ],
        [
            [-1.190983237082364, 1.6464220441659683, 3.6540198973260543],
            [-1.190418528607271, 1.6472636333857107, 3.669532745694121],
            [-1.181813809726415, 1.6317507850176436, 3.6540198973260543],
        ],
        3.7685788536406984e-09,
    ),
]


def _orient(a, b, c, d) -> int:
    """Exact sign of the volume of (a, b, c, d), in rationals."""
    from fractions import Fraction

    a, b, c, d = ([Fraction(float(x)) for x in p] for p in (a, b, c, d))
    u, v, w = ([q[i] - a[i] for i in range(3)] for q in (b, c, d))
    det = (
        u[0] * (v[1] * w[2] - v[2] * w[1])
        - u[1] * (v[0] * w[2] - v[2] * w[0])
        + u[2] * (v[0] * w[1] - v[1] * w[0])
    )
    return (det > 0) - (det < 0)


def _exactly_meet(A, B) -> bool:
    """Whether an edge of one triangle meets the other (crossing or touching), exactly."""

    def segment_meets(p, q, T):
        s, t = _orient(*T, p), _orient(*T, q)
        if s * t > 0 or s == t == 0:
            return False
        sides = [_orient(p, q, T[i], T[(i + 1) % 3]) for i in range(3)]
        return all(x >= 0 for x in sides) or all(x <= 0 for x in sides)

    return any(segment_meets(A[i], A[(i + 1) % 3], B) for i in range(3)) or any(
        segment_meets(B[i], B[(i + 1) % 3], A) for i in range(3)
    )


def test_nearly_parallel_neighbours_do_not_cross():
    for A, B, eps in NEIGHBOURS:
        A, B = np.array([A]), np.array([B])
        assert not _exactly_meet(A[0], B[0])
        assert not topology._triangles_cross(A, B, eps)[0]
        # ... but B moved onto A's centre and turned by 1e-3 rad about a line in A's plane
        # through it crosses A
        c = A[0].mean(axis=0)
        u = (A[0, 1] - A[0, 0]) / np.linalg.norm(A[0, 1] - A[0, 0])
        K = np.array([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]])
        R = np.eye(3) + np.sin(1e-3) * K + (1 - np.cos(1e-3)) * K @ K
        turned = (B[0] - B[0].mean(axis=0)) @ R.T + c
        assert _exactly_meet(A[0], turned)
        assert topology._triangles_cross(A, turned[None], eps)[0]


def test_triangle_cross_agrees_with_exact_predicates():
    """Random pairs, many nearly parallel, crossing at shallow angles or just missing: the
    fast test says what exact rational predicates say (pairs in general position)."""
    rng = np.random.default_rng(7)
    A = rng.normal(size=(600, 3, 3))
    B = rng.normal(size=(600, 3, 3))
    # a third: B is A turned by a small angle about a random axis through a random point
    # of A, and moved a little along A's normal: crossings at angles down to 1e-5 rad
    k = np.arange(200)
    axis = rng.normal(size=(200, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = 10.0 ** rng.uniform(-5, -1, size=200)
    K = np.zeros((200, 3, 3))
    K[:, [2, 0, 1], [1, 2, 0]] = axis
    K[:, [1, 2, 0], [2, 0, 1]] = -axis
    R = np.eye(3) + np.sin(angle)[:, None, None] * K + (1 - np.cos(angle))[:, None, None] * K @ K
    pivot = A[k].mean(axis=1) + 0.3 * rng.normal(size=(200, 3))
    B[k] = np.einsum("kij,kvj->kvi", R, A[k] - pivot[:, None]) + pivot[:, None]
    n = np.cross(A[k, 1] - A[k, 0], A[k, 2] - A[k, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    B[k] += (angle * rng.uniform(-1, 1, size=200))[:, None, None] * n[:, None]
    got = topology._triangles_cross(A, B, 1e-12)
    want = np.array([_exactly_meet(a, b) for a, b in zip(A, B, strict=True)])
    assert 30 < want.sum() < 570  # both answers are well represented
    assert want[k].sum() > 20 and (~want[k]).sum() > 20
    np.testing.assert_array_equal(got, want)


def test_thickness_report_of_exact_shells():
    # a tube of radius T around a circle: the torus of the primitives
    from lipsdf_blender.core.inputs.primitives import torus_mesh

    T = 0.05
    Vc, E = curve_circle(256, 1.0)
    Vt, Ft = torus_mesh(1.0, T, 256, 64)
    r = reports.thickness_report(Vc, E, Vt, Ft, T, n=20000)
    assert r["thickness_error_percent"] == pytest.approx(0.0, abs=1.0)
    assert r["p95_thickness_error"] < 0.02 * T
    assert r["input_inside_percent"] == 100.0 and r["within_bound"]
    assert r["watertight"] and r["components"] == 1
    # a thicker tube is measured thicker
    Vt, Ft = torus_mesh(1.0, 1.24 * T, 256, 64)
    r = reports.thickness_report(Vc, E, Vt, Ft, T, n=20000)
    assert r["thickness_error_percent"] == pytest.approx(24.0, abs=1.5)
    # a square sheet in a box of half-height T: the faces at T, the rim farther
    Vs = np.array([[-1.0, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]])
    Fs = np.array([[0, 1, 2], [0, 2, 3]])
    Vb, Fb = box_mesh([1.0, 1.0, T])
    r = reports.thickness_report(Vs, Fs, Vb, Fb, T, n=20000)
    assert r["median_thickness"] == pytest.approx(T, rel=1e-6)
    assert r["input_inside_percent"] > 99.0 and r["within_bound"]
    # a result that lost half the sheet: the input is not inside and the bound fails
    Vh, Fh = box_mesh([0.5, 1.0, T], center=(-0.5, 0.0, 0.0))
    r = reports.thickness_report(Vs, Fs, Vh, Fh, T, n=20000)
    assert r["input_inside_percent"] < 60.0 and not r["within_bound"]
