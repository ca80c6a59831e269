"""Sparse Lipschitz-pruned marching cubes on exact fields: geometry, topology and cost."""

from __future__ import annotations

import math
import tracemalloc

import igl
import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.sparse.csgraph import connected_components

from lipsdf_blender.core.errors import BadInputError, CancelledError
from lipsdf_blender.core.fields.sdf import BoxField, SphereField
from lipsdf_blender.core.surfaces.cube import CUBE_CORNERS
from lipsdf_blender.core.surfaces.extract import ExtractResult, extract, extract_levels

# ---------------------------------------------------------------- helpers


def undirected_edges(F):
    E = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    return np.unique(np.sort(E, axis=1), axis=0, return_counts=True)


def assert_clean_closed_mesh(res: ExtractResult):
    """Watertight, consistently oriented, no degenerate faces, no unreferenced vertices."""
    V, F = res.vertices, res.faces
    assert V.dtype == np.float64 and V.ndim == 2 and V.shape[1] == 3
    assert F.dtype == np.int64 and F.ndim == 2 and F.shape[1] == 3
    assert len(F) > 0
    assert np.all(np.isfinite(V))
    # every undirected edge in exactly two faces ...
    _, counts = undirected_edges(F)
    assert np.all(counts == 2), "mesh has boundary or non-manifold edges"
    # ... used once in each direction (consistent orientation)
    directed = np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed), "inconsistent orientation"
    # no degenerate faces
    assert np.all((F[:, 0] != F[:, 1]) & (F[:, 1] != F[:, 2]) & (F[:, 0] != F[:, 2]))
    assert np.all(igl.doublearea(V, F) > 0)
    # no unreferenced vertices
    assert np.array_equal(np.unique(F), np.arange(len(V)))


def signed_volume(V, F):
    return float(np.einsum("ij,ij->i", V[F[:, 0]], np.cross(V[F[:, 1]], V[F[:, 2]])).sum() / 6)


def euler(V, F):
    return len(V) - len(undirected_edges(F)[0]) + len(F)


def n_components(V, F):
    E = np.concatenate([F[:, [0, 1]], F[:, [1, 2]]])
    A = scipy.sparse.coo_matrix((np.ones(len(E)), (E[:, 0], E[:, 1])), shape=(len(V), len(V)))
    return connected_components(A, directed=False)[0]


class UnionField:
    """min of two fields: an exact-outside, 1-Lipschitz union."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def __call__(self, x):
        return torch.minimum(self.a(x), self.b(x))

    def bounds(self):
        (la, ha), (lb, hb) = self.a.bounds(), self.b.bounds()
        return np.minimum(la, lb), np.maximum(ha, hb)


class LyingBounds:
    """A field whose ``bounds()`` are smaller than its zero set."""

    def __init__(self, inner, lo, hi):
        self.inner, self.lo, self.hi = inner, np.asarray(lo, float), np.asarray(hi, float)

    def __call__(self, x):
        return self.inner(x)

    def bounds(self):
        return self.lo, self.hi


class BumpySphere:
    """Sphere with a wavy, 1-Lipschitz-rescaled perturbation: many ambiguous MC cases."""

    def __init__(self, amplitude=0.06, frequency=12.0):
        self.a, self.w = amplitude, frequency
        self.lip = 1.0 + amplitude * frequency * math.sqrt(3.0)

    def __call__(self, x):
        s = torch.sin(self.w * x).prod(dim=1)
        return (torch.linalg.norm(x, dim=1) - 1.0 + self.a * s) / self.lip

    def bounds(self):
        return np.full(3, -1.1), np.full(3, 1.1)


# ---------------------------------------------------------------- corner ordering


def test_igl_sparse_marching_cubes_corner_order():
    """With CUBE_CORNERS every cut point lies on an edge of the cube, for all 254 sign cases,
    and triangles face away from the negative corners."""
    rng = np.random.default_rng(0)
    GV = CUBE_CORNERS.astype(np.float64)
    GI = np.arange(8, dtype=np.int64)[None]
    for bits in range(1, 255):
        inside = np.array([(bits >> c) & 1 for c in range(8)], dtype=bool)
        S = np.where(inside, -1.0, 1.0) * rng.uniform(0.2, 1.0, 8)
        V, F, _ = igl.marching_cubes(S, GV, GI, 0.0)
        assert len(F) > 0
        on_face_planes = np.isclose(V, 0.0) | np.isclose(V, 1.0)
        assert np.all(on_face_planes.sum(axis=1) >= 2), f"case {bits}: cut point off the edges"
        if inside.sum() == 1:
            corner = GV[inside][0]
            n = np.cross(V[F[:, 1]] - V[F[:, 0]], V[F[:, 2]] - V[F[:, 0]])
            assert np.all(np.einsum("ij,ij->i", n, V[F].mean(axis=1) - corner) > 0)


# ---------------------------------------------------------------- sphere


@pytest.mark.parametrize("resolution", [64, 128])
def test_sphere(resolution):
    r, c = 0.7, np.array([0.3, -0.2, 0.1])
    res = extract(SphereField(c, r), resolution=resolution)
    assert_clean_closed_mesh(res)
    err = np.abs(np.linalg.norm(res.vertices - c, axis=1) - r).max()
    assert err <= (0.01 if resolution == 128 else 0.02) * r
    vol = signed_volume(res.vertices, res.faces)
    assert vol > 0
    assert vol == pytest.approx(4 / 3 * math.pi * r**3, rel=0.02)
    assert euler(res.vertices, res.faces) == 2
    assert n_components(res.vertices, res.faces) == 1
    s = res.stats
    assert s.resolution == resolution and max(s.shape) == resolution
    assert s.dense_evaluations == int(np.prod(np.array(s.shape) + 1))
    assert (
        0 < s.evaluations < s.dense_evaluations and s.ratio == s.evaluations / s.dense_evaluations
    )
    assert s.active_cells > 0 and s.seconds > 0


def test_several_levels_share_one_hierarchy_and_nest():
    r = 1.0
    levels = [-0.2, 0.0, 0.3]
    results = extract_levels(SphereField(radius=r), levels, resolution=96)
    assert [x.level for x in results] == levels
    norms = []
    for res, level in zip(results, levels, strict=True):
        assert_clean_closed_mesh(res)
        n = np.linalg.norm(res.vertices, axis=1)
        assert np.abs(n - (r + level)).max() <= 0.01 * (r + level)
        assert euler(res.vertices, res.faces) == 2
        norms.append(n)
    assert norms[0].max() < norms[1].min() and norms[1].max() < norms[2].min()
    assert len({x.stats.evaluations for x in results}) == 1
    single = extract(SphereField(radius=r), level=0.3, resolution=96)
    # the grid (grown by the largest level) is the same, so one call costs less than three
    assert results[0].stats.evaluations < 3 * single.stats.evaluations


def traced_peak_bytes(fn):
    """Peak of the memory that numpy and Python allocate while ``fn`` runs."""
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_ratio_and_memory_at_256():
    res, peak = traced_peak_bytes(lambda: extract(SphereField(radius=1.0), resolution=256))
    assert_clean_closed_mesh(res)
    print(f"sphere @256: evaluations/dense = {res.stats.ratio:.4f}, {res.stats.seconds:.2f} s")
    assert res.stats.ratio < 0.10
    # less than a single dense (N+1)^3 float64 array, and growing like the surface (x4 per
    # doubling of the resolution), not like the volume (x8)
    assert peak < 0.75 * res.stats.dense_evaluations * 8
    _, peak_128 = traced_peak_bytes(lambda: extract(SphereField(radius=1.0), resolution=128))
    assert peak < 5.0 * peak_128


# ---------------------------------------------------------------- other shapes


def test_box_with_sharp_corners():
    half = np.array([1.0, 0.6, 0.4])
    res = extract(BoxField((0.1, 0.2, 0.3), half), resolution=96)
    assert_clean_closed_mesh(res)
    assert euler(res.vertices, res.faces) == 2
    assert signed_volume(res.vertices, res.faces) == pytest.approx(8 * half.prod(), rel=0.03)


def test_rounded_box_offset_matches_steiner_formula():
    a, r = np.array([1.0, 0.6, 0.4]), 0.15
    res = extract(BoxField(half_size=a), level=r, resolution=96)
    assert_clean_closed_mesh(res)
    box, area, edges = 8 * a.prod(), 8 * (a[0] * a[1] + a[1] * a[2] + a[2] * a[0]), 8 * a.sum()
    steiner = box + area * r + math.pi * r**2 * edges / 4 + 4 / 3 * math.pi * r**3
    assert signed_volume(res.vertices, res.faces) == pytest.approx(steiner, rel=0.02)


def test_corner_values_exactly_on_the_level():
    # margin 0.5, resolution 24: h = 0.125 and the grid planes +-1 hold the box's faces, so
    # whole faces of corners have the value 0 exactly
    res = extract(BoxField(), resolution=24, margin=0.5)
    h = res.stats.cell_size
    assert h == 0.125
    assert_clean_closed_mesh(res)
    assert euler(res.vertices, res.faces) == 2
    # marching cubes chamfers each of the 12 edges (total length 24) by a half cell
    chamfered = 8.0 - 24 * h**2 / 2
    assert signed_volume(res.vertices, res.faces) == pytest.approx(chamfered, rel=0.005)


def test_union_of_two_apart_spheres_has_two_components():
    f = UnionField(SphereField((-1.0, 0, 0), 0.5), SphereField((1.0, 0.2, 0), 0.4))
    res = extract(f, resolution=96)
    assert_clean_closed_mesh(res)
    assert n_components(res.vertices, res.faces) == 2
    assert euler(res.vertices, res.faces) == 4
    expected = 4 / 3 * math.pi * (0.5**3 + 0.4**3)
    assert signed_volume(res.vertices, res.faces) == pytest.approx(expected, rel=0.02)


def test_wavy_surface_with_ambiguous_cells_is_watertight():
    res = extract(BumpySphere(), resolution=48)
    assert_clean_closed_mesh(res)
    assert signed_volume(res.vertices, res.faces) > 0


# ---------------------------------------------------------------- edge cases


def test_no_surface_gives_empty_mesh():
    out = extract_levels(SphereField(radius=1.0), [-1.5, 0.0], resolution=32)
    empty, full = out
    assert empty.vertices.shape == (0, 3) and empty.faces.shape == (0, 3)
    assert empty.faces.dtype == np.int64 and empty.is_empty
    assert empty.stats.active_cells == 0
    assert not full.is_empty


def test_surface_beyond_lying_bounds_is_closed_at_the_grid():
    # the sphere sticks out of the claimed bounds on +x: it is cut by the grid and capped
    f = LyingBounds(SphereField(radius=1.0), (-1.0, -1.0, -1.0), (0.3, 1.0, 1.0))
    res = extract(f, resolution=64, margin=0.1)
    assert_clean_closed_mesh(res)
    assert euler(res.vertices, res.faces) == 2
    assert n_components(res.vertices, res.faces) == 1
    lo, hi = res.stats.grid_bounds
    assert np.all(res.vertices >= lo - 1e-9) and np.all(res.vertices <= hi + 1e-9)
    x = hi[0]
    assert 0.4 <= x < 0.45 and res.vertices[:, 0].max() == pytest.approx(x, abs=1e-6)
    # volume of the unit ball cut by the grid's face at x
    cap = math.pi * (1 - x) ** 2 * (2 + x) / 3
    assert signed_volume(res.vertices, res.faces) == pytest.approx(4 / 3 * math.pi - cap, rel=0.03)


def test_grid_entirely_inside_gives_the_grid_box():
    # no point of the grid is outside the field's zero set: the mesh is the grid's boundary
    f = LyingBounds(SphereField(radius=5.0), (-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))
    res = extract(f, resolution=32, margin=0.0)
    assert_clean_closed_mesh(res)
    assert euler(res.vertices, res.faces) == 2
    assert signed_volume(res.vertices, res.faces) == pytest.approx(1.0, rel=0.1)


def test_progress_and_cancel():
    seen = []
    extract(SphereField(), resolution=32, batch_size=500, progress=lambda d, t: seen.append((d, t)))
    done = [d for d, _ in seen]
    assert len({t for _, t in seen}) == 1
    assert done == sorted(done) and done[-1] == seen[0][1]

    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(CancelledError):
        extract(SphereField(), resolution=64, batch_size=500, cancel=cancel)


def test_explicit_cpu_device_gives_the_same_mesh():
    a = extract(SphereField(radius=0.5), resolution=32)
    b = extract(SphereField(radius=0.5), resolution=32, device=torch.device("cpu"))
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)


@pytest.mark.parametrize(
    "kw",
    [
        {"resolution": 4},
        {"batch_size": 0},
        {"margin": -1.0},
        {"level": float("nan")},
    ],
)
def test_bad_parameters(kw):
    with pytest.raises(BadInputError):
        extract(SphereField(), **kw)


def test_nan_field_is_reported():
    class NaNField(SphereField):
        def __call__(self, x):
            return torch.full((len(x),), float("nan"))

    with pytest.raises(BadInputError, match="NaN"):
        extract(NaNField(), resolution=32)


def _device_path_on(monkeypatch, device):
    """Force the whole-hierarchy tensor path (used on CUDA) onto ``device``."""
    import lipsdf_blender.core.surfaces.extract as E

    monkeypatch.setattr(E, "_cuda_device", lambda d: torch.device(device))


@pytest.mark.parametrize("levels", [[0.0], [0.0, -0.3, 0.2]])
def test_tensor_path_gives_the_same_meshes_as_the_numpy_path(monkeypatch, levels):
    # The CUDA path is the same algorithm in torch; run it on the CPU so CI checks it.
    field = BoxField(half_size=(1.0, 0.5, 0.25))
    ref = extract_levels(field, levels, resolution=48)
    _device_path_on(monkeypatch, "cpu")
    got = extract_levels(field, levels, resolution=48, device="cpu")
    for a, b in zip(ref, got, strict=True):
        assert a.stats.evaluations == b.stats.evaluations
        assert a.stats.active_cells == b.stats.active_cells
        assert np.array_equal(a.faces.shape, b.faces.shape)
        np.testing.assert_array_equal(np.sort(a.vertices, axis=0), np.sort(b.vertices, axis=0))


@pytest.mark.gpu
def test_cuda_extraction_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    field = SphereField(radius=1.0)
    ref = extract(field, 0.0, resolution=64)
    got = extract(field, 0.0, resolution=64, device="cuda")
    assert ref.stats.evaluations == got.stats.evaluations
    assert len(ref.faces) == len(got.faces)
    np.testing.assert_allclose(
        np.sort(ref.vertices, axis=0), np.sort(got.vertices, axis=0), atol=1e-5
    )
