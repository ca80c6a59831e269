"""Narrow bands on voxel grids (core + worker), the OpenVDB level-set writer, and Blender's
SDF grid nodes reading what it writes (bpy 5.0+ in a subprocess)."""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsdf_blender.core.errors import BadInputError, CancelledError, LipSDFError
from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.fields.query import evaluate
from lipsdf_blender.core.fields.sdf import BoxField, SphereField
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.surfaces.mesh_distance import MeshDistance
from lipsdf_blender.core.surfaces.metrics import chamfer_hausdorff
from lipsdf_blender.core.surfaces.topology import is_watertight
from lipsdf_blender.core.tools import grid
from lipsdf_blender.core.tools.grid import band_index_range, narrow_band
from lipsdf_blender.worker import protocol as P
from lipsdf_blender.worker.client import JobCancelledError, WorkerError

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = {"n_uniform": 2000, "n_surface": 4000}
OVERRIDES = {"depth": 3, "width": 16, "steps": 150, "batch_size": 256, "samples": SAMPLES}
TRAIN = {"preset": "fast", "device": "cpu", "seed": 3, "overrides": OVERRIDES}
#: The Python with bpy (as in test_blender.py).
BLENDER_PYTHON = os.environ.get("LIPSDF_BLENDER_PYTHON") or sys.executable


def dense_band(field, voxel, band, bounds=None):
    """Brute force: every voxel of the grid, kept where ``|f| < band * voxel`` (float32)."""
    lo, hi = band_index_range(field.bounds() if bounds is None else bounds, voxel, band)
    axes = [np.arange(a, b + 1) for a, b in zip(lo, hi, strict=True)]
    ijk = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    f = evaluate(field, ijk * voxel).astype(np.float32)
    keep = np.abs(f) < np.float32(band * voxel)
    return ijk[keep], f[keep]


def as_set(ijk) -> set:
    return set(map(tuple, np.asarray(ijk).tolist()))


# -- core -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, voxel, band",
    [
        (SphereField(center=(0.1, -0.2, 0.05), radius=0.8), 0.05, 3.0),
        (SphereField(radius=0.3), 0.011, 1.5),
        (BoxField(center=(0.2, 0.0, -0.1), half_size=(0.6, 0.4, 0.3)), 0.04, 3.0),
        (BoxField(half_size=(0.6, 0.4, 0.3)), 0.1, 5.0),
    ],
)
def test_narrow_band_is_the_whole_band_with_exact_values(field, voxel, band):
    ijk, values = narrow_band(field, voxel, band, batch_size=4096)
    assert ijk.dtype == np.int32 and values.dtype == np.float32
    assert len(ijk) > 0 and len(as_set(ijk)) == len(ijk)  # each voxel once
    # the values are the field at the voxel centres ijk * voxel
    expected = evaluate(field, ijk.astype(np.float64) * voxel)
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    assert np.abs(values).max() < np.float32(band * voxel)
    # completeness: the Lipschitz pruning loses no voxel of the band
    dense_ijk, _ = dense_band(field, voxel, band)
    assert as_set(ijk) == as_set(dense_ijk)
    # the band surrounds the surface: both signs, and a sphere's band is a shell of the
    # right radius
    assert values.min() < 0 < values.max()
    if isinstance(field, SphereField):
        r = np.linalg.norm(ijk * voxel - field.center, axis=1)
        assert np.all(np.abs(r - field.radius) < band * voxel + 1e-6)


def test_narrow_band_in_given_bounds_and_progress_and_cancel():
    field = SphereField(radius=0.5)
    bounds = (np.array([0.0, -0.5, -0.5]), np.array([0.5, 0.5, 0.5]))  # half the sphere
    ijk, values = narrow_band(field, 0.05, 2.0, bounds=bounds)
    dense_ijk, _ = dense_band(field, 0.05, 2.0, bounds=bounds)
    assert as_set(ijk) == as_set(dense_ijk)
    assert ijk[:, 0].min() >= -2  # the box grown by the band only
    seen = []
    narrow_band(field, 0.02, 3.0, batch_size=512, progress=lambda d, t: seen.append((d, t)))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 1
    assert all(a[0] <= b[0] and a[1] == b[1] for a, b in zip(seen, seen[1:], strict=False))
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(CancelledError):
        narrow_band(field, 0.02, 3.0, batch_size=512, cancel=cancel)


def test_trained_field_band_matches_query(sphere_field):
    voxel, band = 0.05, 3.0
    ijk, values = narrow_band(sphere_field, voxel, band)
    np.testing.assert_allclose(values, evaluate(sphere_field, ijk * voxel), rtol=0, atol=1e-6)
    assert np.abs(values).max() < np.float32(band * voxel)
    # the network's band is whole too (it is 1-Lipschitz by construction)
    assert as_set(ijk) == as_set(dense_band(sphere_field, voxel, band)[0])
    # and it lies about the trained sphere's surface (radius 0.8): the network's slope is
    # at most 1, so a value below band * voxel can be a little farther than that
    r = np.linalg.norm(ijk * voxel, axis=1)
    assert np.all(np.abs(r - 0.8) < 1.5 * band * voxel)


def test_bad_sizes_and_too_fine_voxel(monkeypatch):
    field = SphereField(radius=1.0)
    for voxel, band in [(0.0, 3.0), (-1.0, 3.0), (float("nan"), 3.0), (0.1, 0.0), (0.1, np.inf)]:
        with pytest.raises(BadInputError):
            narrow_band(field, voxel, band)
    with pytest.raises(BadInputError, match="at least") as err:
        narrow_band(field, 1e-4, 3.0)
    # the voxel suggested works (and about half of it does not)
    suggested = float(str(err.value).split("at least ")[1].split()[0])
    lo, hi = band_index_range(field.bounds(), suggested, 3.0)
    assert (hi - lo + 1).max() <= 2048
    with pytest.raises(BadInputError):
        band_index_range(field.bounds(), suggested * 0.5, 3.0)
    # a band too big to hold: the message suggests a voxel that does fit
    monkeypatch.setattr(grid, "MAX_VOXELS", 200_000)
    with pytest.raises(BadInputError, match="at least") as err:
        narrow_band(field, 0.01, 3.0)
    suggested = float(str(err.value).split("at least ")[1].split()[0])
    assert len(narrow_band(field, 1.2 * suggested, 3.0)[0]) > 0
    with pytest.raises(BadInputError, match="origin"):
        narrow_band(SphereField(center=(3e7, 0, 0), radius=1.0), 0.01, 3.0)


# -- worker ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(client, tmp_path_factory):
    V, F = primitives.icosphere(0.8, 3)
    d = tmp_path_factory.mktemp("train")
    result = client.run("train", TRAIN, job_dir=d, arrays={"vertices": V, "faces": F})
    return result["files"]["field"], d


def test_grid_job_is_the_exact_distance_to_the_remesh(client, trained):
    path, d = trained
    seen = []
    voxel, band, res = 0.05, 2.5, 32
    r = client.run(
        "grid",
        {"field": path, "voxel": voxel, "band": band, "resolution": res},
        d,
        on_progress=seen.append,
    )
    assert r["type"] == P.RESULT and "grid" in {m["phase"] for m in seen}
    a = P.load_arrays(r["files"]["grid"])
    ijk, values = a["ijk"], a["values"]
    assert ijk.dtype == np.int32 and ijk.shape[1:] == (3,) and values.dtype == np.float32
    assert a["voxel"].shape == () and float(a["voxel"]) == voxel and float(a["band"]) == band
    assert r["info"]["voxels"] == len(ijk) > 0 and r["info"]["seconds"] >= 0
    # the same remesh as an extract job's; the grid holds its exact distance at the centres
    m = P.load_arrays(
        client.run("extract", {"field": path, "resolution": res}, d)["files"]["meshes"]
    )
    exact = MeshDistance(m["vertices_0"], m["faces_0"])
    np.testing.assert_allclose(values, evaluate(exact, ijk * voxel), rtol=0, atol=1e-6)
    assert np.abs(values).max() < np.float32(band * voxel)
    assert as_set(ijk) == as_set(dense_band(exact, voxel, band)[0])
    lo, hi = band_index_range(exact.bounds(), voxel, band)
    assert r["info"]["dims"] == (hi - lo + 1).tolist()


def test_grid_job_of_the_network(client, trained):
    path, d = trained
    voxel, band = 0.06, 2.0
    r = client.run("grid", {"field": path, "voxel": voxel, "band": band, "exact": False}, d)
    a = P.load_arrays(r["files"]["grid"])
    field = Field.load(path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker runs
    try:
        expected = evaluate(field, a["ijk"] * voxel)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(a["values"], expected, rtol=0, atol=1e-5)
    assert np.abs(a["values"]).max() < np.float32(band * voxel)


def test_grid_job_cancel(client, trained):
    path, d = trained
    # a fine grid of the network: millions of band voxels, far longer than the cancel takes
    job = client.submit("grid", {"field": path, "voxel": 0.0015, "exact": False}, d)
    deadline = time.monotonic() + 60
    while True:
        assert time.monotonic() < deadline, "no grid progress"
        msgs = [m for m in client.poll() if m.get("id") == job]
        assert not any(m["type"] in P.FINAL for m in msgs), msgs
        if any(m["type"] == P.PROGRESS and m["phase"] == "grid" for m in msgs):
            break
        time.sleep(0.02)
    t0 = time.monotonic()
    client.cancel(job)
    with pytest.raises(JobCancelledError):
        client.wait(job, timeout=10)
    assert time.monotonic() - t0 < 2.0


@pytest.mark.parametrize(
    "params, text",
    [
        ({"voxel": 0}, "voxel"),
        ({"voxel": -0.1}, "voxel"),
        ({}, "voxel"),
        ({"voxel": "0.1"}, "voxel"),
        ({"voxel": 0.05, "band": 0}, "band"),
        ({"voxel": 0.05, "band": 65}, "band"),
        ({"voxel": 0.05, "exact": "yes"}, "exact"),
        ({"voxel": 0.05, "resolution": 1}, "resolution"),
        ({"voxel": 1e-5}, "at least"),
    ],
)
def test_grid_job_bad_params(client, trained, params, text):
    path, d = trained
    with pytest.raises(WorkerError) as err:
        client.run("grid", {"field": path, **params}, d, timeout=60)
    assert err.value.kind == P.BAD_INPUT and text in str(err.value)


# -- the .vdb writer ------------------------------------------------------------------------
@functools.cache
def _openvdb():
    """openvdb, from this Python or from the bpy module's own folder (loaded alone, never
    the rest of that folder); ``None`` when there is none."""
    try:
        import openvdb

        return openvdb
    except ImportError:
        pass
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(list(spec.submodule_search_locations)[0])
    found = sorted(root.glob("*/python/lib/python3*/site-packages/openvdb*.so"))
    if not found:
        return None
    s = importlib.util.spec_from_file_location("openvdb", found[0])
    module = importlib.util.module_from_spec(s)
    s.loader.exec_module(module)
    return module


@pytest.fixture
def openvdb(monkeypatch):
    module = _openvdb()
    if module is None:
        pytest.skip("openvdb cannot be imported (it comes with Blender 5.0's Python or bpy 5.0)")
    monkeypatch.setitem(sys.modules, "openvdb", module)
    return module


def test_vdb_module_imports_neither_bpy_nor_torch():
    code = (
        "import sys, lipsdf_blender.blender.vdb;"
        "bad = [m for m in ('torch', 'bpy', 'igl') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_no_openvdb_is_a_clear_error(monkeypatch):
    from lipsdf_blender.blender import vdb

    monkeypatch.setitem(sys.modules, "openvdb", None)  # None: "import openvdb" fails
    monkeypatch.setitem(sys.modules, "pyopenvdb", None)
    monkeypatch.delitem(sys.modules, "bpy", raising=False)
    with pytest.raises(LipSDFError, match="no openvdb module; Blender 5.0 or later"):
        vdb.openvdb_module()


@pytest.mark.parametrize("max_dense_bytes", [512 << 20, 40_000])  # one block, many slabs
def test_vdb_round_trip(openvdb, tmp_path, max_dense_bytes):
    from lipsdf_blender.blender import vdb

    field = SphereField(center=(0.1, -0.2, 0.05), radius=0.8)
    voxel, band = 0.04, 3.0
    ijk, values = narrow_band(field, voxel, band)
    path = tmp_path / "sphere.vdb"
    info = vdb.write_level_set(path, ijk, values, voxel, band, max_dense_bytes=max_dense_bytes)
    assert info["active_voxels"] == len(ijk)
    assert info["bbox"] == [ijk.min(axis=0).tolist(), ijk.max(axis=0).tolist()]
    background = np.float32(band * voxel)
    # read back: the band exactly (float32), active; inside -background, outside +background
    back = vdb.read_values(path, ijk, max_dense_bytes=max_dense_bytes)
    assert np.array_equal(back, values)
    grid = openvdb.read(str(path), "distance")
    assert grid.gridClass == openvdb.GridClass.LEVEL_SET
    assert np.float32(grid.background) == background
    assert np.allclose(grid.transform.voxelSize(), voxel)
    acc = grid.getConstAccessor()
    assert all(acc.isValueOn(tuple(map(int, c))) for c in ijk[:: max(1, len(ijk) // 500)])
    centre = np.round(field.center / voxel).astype(np.int64)
    probes = np.array([centre, centre + [60, 0, 0], centre - [0, 0, 60], centre + [5, 5, 5]])
    far = vdb.read_values(path, probes)
    assert far.tolist() == [-background, background, background, -background]
    assert not any(acc.isValueOn(tuple(map(int, c))) for c in probes)
    # every voxel of a coarse lattice: the band's value, else the sign of the true distance
    axes = np.arange(-40, 41, 3)
    lattice = np.stack(np.meshgrid(axes, axes, axes, indexing="ij"), axis=-1).reshape(-1, 3)
    read = vdb.read_values(path, lattice, max_dense_bytes=max_dense_bytes)
    d = evaluate(field, lattice * voxel).astype(np.float32)
    outside_band = np.abs(d) >= background
    assert np.array_equal(read[outside_band], np.sign(d[outside_band]) * background)
    np.testing.assert_allclose(read[~outside_band], d[~outside_band], atol=1e-6)


def test_vdb_writer_refuses_what_is_not_a_band(openvdb, tmp_path):
    from lipsdf_blender.blender import vdb

    ijk = np.zeros((2, 3), np.int32)
    with pytest.raises(BadInputError, match="band"):
        vdb.write_level_set(tmp_path / "a.vdb", ijk, np.array([0.0, 0.5], np.float32), 0.1, 3.0)
    with pytest.raises(BadInputError, match="empty"):
        vdb.write_level_set(tmp_path / "a.vdb", ijk[:0], np.zeros(0, np.float32), 0.1, 3.0)
    with pytest.raises(BadInputError, match="voxel"):
        vdb.write_level_set(tmp_path / "a.vdb", ijk, np.zeros(2, np.float32), 0.0, 3.0)
    assert not (tmp_path / "a.vdb").exists()


# -- Blender's SDF grid nodes -----------------------------------------------------------------
#: Runs in a fresh Python with bpy: writes each case's .vdb with the add-on's writer, loads it
#: as a Volume object, meshes it with Get Named Grid -> Grid to Mesh and saves the result.
BLENDER_SCRIPT = """
import json, sys
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix

out = Path(sys.argv[1])
facts = {"version": list(bpy.app.version)}
if bpy.app.version < (5, 0, 0):
    (out / "facts.json").write_text(json.dumps(facts))
    sys.exit(0)
from lipsdf_blender.blender import vdb

for ob in list(bpy.data.objects):
    bpy.data.objects.remove(ob)
scene = bpy.context.scene
for case in json.loads((out / "cases.json").read_text()):
    name = case["name"]
    a = np.load(case["band"])
    path = out / (name + ".vdb")
    info = vdb.write_level_set(path, a["ijk"], a["values"], float(a["voxel"]), float(a["band"]))
    matrix = Matrix(case["matrix"]) if case["matrix"] else None
    vol = vdb.load_volume(scene.collection, path, name, matrix)
    grids = [
        {"name": g.name, "type": g.data_type, "matrix": [list(r) for r in g.matrix_object]}
        for g in vol.data.grids
    ]
    ng = bpy.data.node_groups.new(name + " mesher", "GeometryNodeTree")
    ng.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    info_node = ng.nodes.new("GeometryNodeObjectInfo")
    info_node.inputs["Object"].default_value = vol
    info_node.transform_space = "RELATIVE"
    get = ng.nodes.new("GeometryNodeGetNamedGrid")
    get.data_type = "FLOAT"
    get.inputs["Name"].default_value = vdb.GRID_NAME
    to_mesh = ng.nodes.new("GeometryNodeGridToMesh")
    to_mesh.inputs["Threshold"].default_value = 0.0
    to_mesh.inputs["Adaptivity"].default_value = 0.0
    output = ng.nodes.new("NodeGroupOutput")
    ng.links.new(info_node.outputs["Geometry"], get.inputs["Volume"])
    ng.links.new(get.outputs["Grid"], to_mesh.inputs["Grid"])
    ng.links.new(to_mesh.outputs["Mesh"], output.inputs[0])
    mesh_ob = bpy.data.objects.new(name + " mesh", bpy.data.meshes.new(name + " mesh"))
    scene.collection.objects.link(mesh_ob)
    mesh_ob.modifiers.new("grid to mesh", "NODES").node_group = ng
    evaluated = mesh_ob.evaluated_get(bpy.context.evaluated_depsgraph_get())
    m = evaluated.to_mesh()
    m.calc_loop_triangles()
    V = np.zeros(len(m.vertices) * 3)
    m.vertices.foreach_get("co", V)
    T = np.zeros(len(m.loop_triangles) * 3, dtype=np.int64)
    m.loop_triangles.foreach_get("vertices", T)
    evaluated.to_mesh_clear()
    np.savez(out / (name + "_mesh.npz"), vertices=V.reshape(-1, 3), faces=T.reshape(-1, 3))
    facts[name] = {"info": info, "grids": grids}
(out / "facts.json").write_text(json.dumps(facts))
"""


def _has_bpy(python: str) -> bool:
    if python == sys.executable:
        return importlib.util.find_spec("bpy") is not None
    probe = "import importlib.util, sys; sys.exit(importlib.util.find_spec('bpy') is None)"
    try:
        return subprocess.run([python, "-c", probe], capture_output=True).returncode == 0
    except OSError:
        return False


def run_bpy(script: str, out: Path, timeout: float = 120) -> dict:
    """Run ``script`` (which writes ``facts.json`` in ``out``) in a fresh Python with bpy
    (bpy can be imported once per process); the add-on's modules come from this tree."""
    path = out / "script.py"
    path.write_text(textwrap.dedent(script))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [BLENDER_PYTHON, str(path), str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(out),
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    return json.loads((out / "facts.json").read_text())


@pytest.mark.skipif(not _has_bpy(BLENDER_PYTHON), reason=f"needs bpy in {BLENDER_PYTHON}")
def test_blender_grid_nodes_mesh_the_level_set(tmp_path):
    voxel, band = 0.04, 3.0
    sphere = SphereField(radius=0.8)
    Vt, Ft = primitives.torus_mesh(R=0.7, r=0.25, n_major=64, n_minor=32)
    torus = MeshDistance(Vt, Ft)
    # the moved sphere's Volume object carries the source's object matrix: scale 2, moved
    moved = np.diag([2.0, 2.0, 2.0, 1.0])
    moved[:3, 3] = (0.5, -1.0, 2.0)
    cases = []
    for name, field, matrix in [
        ("sphere", sphere, None),
        ("moved", sphere, moved),
        ("torus", torus, None),
    ]:
        ijk, values = narrow_band(field, voxel, band)
        npz = tmp_path / f"{name}_band.npz"
        np.savez(npz, ijk=ijk, values=values, voxel=np.float64(voxel), band=np.float64(band))
        m = None if matrix is None else matrix.tolist()
        cases.append({"name": name, "band": str(npz), "matrix": m, "voxels": len(ijk)})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    facts = run_bpy(BLENDER_SCRIPT, tmp_path)
    if tuple(facts["version"]) < (5, 0, 0):
        pytest.skip(f"Blender {facts['version']} has no SDF grid nodes (5.0 or later)")

    meshes = {}
    for case in cases:
        name = case["name"]
        f = facts[name]
        assert f["info"]["active_voxels"] == case["voxels"]
        # Blender reads one float grid named "distance" with voxel size `voxel`
        (grid,) = f["grids"]
        assert grid["name"] == "distance" and grid["type"] == "FLOAT"
        np.testing.assert_allclose(np.diag(grid["matrix"])[:3], voxel, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(grid["matrix"])[:3, 3], 0.0, atol=1e-9)
        m = np.load(tmp_path / f"{name}_mesh.npz")
        V, F = m["vertices"], m["faces"]
        assert len(V) > 100 and len(F) > 100
        assert is_watertight(F), name
        meshes[name] = (V, F)

    # the sphere: every vertex well within half a voxel of the analytic surface
    V, _ = meshes["sphere"]
    assert (
        np.abs(np.linalg.norm(V, axis=1) - 0.8).max() < 0.1 * voxel
    )  # half a voxel, and then some
    # moved by its object's matrix: in world space, the sphere of radius 1.6 about the origin
    # of the matrix (object-space distances scaled by 2)
    V, _ = meshes["moved"]
    r = np.linalg.norm(V - moved[:3, 3], axis=1)
    assert np.abs(r - 1.6).max() < 2 * 0.1 * voxel
    # the torus: the mesh Blender makes from the grid is the mesh the distance came from
    V, F = meshes["torus"]
    d = chamfer_hausdorff(V, F, Vt, Ft, n=20000)
    assert d["chamfer_l1"] < 0.1 * voxel and d["hausdorff"] < 0.25 * voxel, d
    # genus 1 survives: V - E + F = 0
    E = len(
        np.unique(np.sort(np.concatenate([F[:, [0, 1]], F[:, [1, 2]], F[:, [2, 0]]]), 1), axis=0)
    )
    assert len(np.unique(F)) - E + len(F) == 0
