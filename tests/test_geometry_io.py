"""Geometry validation and file round trips (core.inputs.geometry and primitives, core.formats)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import sphere_cloud, write_scan_ply

from lipsdf_blender.core.errors import BadInputError
from lipsdf_blender.core.formats.files import load_geometry, save_mesh, save_points
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.inputs.primitives import (
    box_mesh,
    curve_circle,
    icosphere,
    open_monkey_like,
    torus_mesh,
    torus_points,
)
from lipsdf_blender.core.surfaces import topology


def test_core_does_not_import_bpy():
    assert "bpy" not in sys.modules


# -- Geometry ---------------------------------------------------------------------------------


def test_constructors_bounds_and_diagonal():
    V, F = box_mesh([1.0, 2.0, 3.0], center=(1.0, 0.0, 0.0))
    g = Geometry.mesh(V, F).validate()
    lo, hi = g.bounds()
    np.testing.assert_allclose(lo, [0.0, -2.0, -3.0])
    np.testing.assert_allclose(hi, [2.0, 2.0, 3.0])
    assert g.diagonal() == pytest.approx(np.sqrt(4 + 16 + 36))
    assert g.vertices.dtype == np.float64 and g.faces.dtype == np.int64

    P = torus_points(100)
    assert Geometry.points(P).validate().normals is None
    assert Geometry.points(P, np.ones_like(P)).validate().normals.shape == (100, 3)
    Vc, E = curve_circle(16)
    c = Geometry.curve(Vc, E).validate()
    assert c.kind == "curve" and c.edges.shape == (16, 2)


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Geometry.mesh(np.zeros((0, 3)), np.zeros((0, 3))), ["no vertices"]),
        (lambda: Geometry.points(np.zeros((0, 3))), ["no vertices"]),
        (lambda: Geometry.points([[0, 0, 0], [1, np.nan, 0]]), ["NaN", "vertex 1"]),
        (lambda: Geometry.points([[0, 0, 0], [1, np.inf, 0]]), ["infinite"]),
        (lambda: Geometry.mesh(np.eye(3), [[0, 1, 3]]), ["3 vertices", "corrupt"]),
        (lambda: Geometry.mesh(np.eye(3), [[0, 1, -1]]), ["valid indices 0..2"]),
        (lambda: Geometry.curve(np.eye(3), [[0, 5]]), ["edge 0"]),
        (lambda: Geometry.points(np.ones((5, 3))), ["same place"]),
        (lambda: Geometry.points(np.ones((5, 2))), ["(n, 3)"]),
        (lambda: Geometry.mesh(np.eye(4, 3), [[0, 1, 2, 3]]), ["Triangulate"]),
        (lambda: Geometry.mesh(np.eye(3), np.zeros((0, 3))), ["no faces"]),
        (lambda: Geometry.points(np.eye(3), np.ones((2, 3))), ["one normal per point"]),
        (lambda: Geometry("volume", np.eye(3)), ["Unknown geometry kind"]),
        (lambda: Geometry.mesh(np.eye(3), [[0, 1], [2]]), ["indices"]),
    ],
)
def test_validate_refuses_with_clear_message(make, words):
    with pytest.raises(BadInputError) as info:
        make().validate()
    for w in words:
        assert w in str(info.value)


def test_content_hash_identifies_the_input():
    V, F = icosphere(1.0, 1)
    h = Geometry.mesh(V, F).content_hash()
    # same values in another dtype or memory layout: same hash
    assert h == Geometry.mesh(np.asfortranarray(V), F.astype(np.int32)).content_hash()
    assert len(h) == 64
    V2 = V.copy()
    V2[3, 1] += 1e-9
    assert Geometry.mesh(V2, F).content_hash() != h
    assert Geometry.mesh(V, F[:, [0, 2, 1]]).content_hash() != h
    assert Geometry.points(V).content_hash() != h


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".obj", ".ply", ".off", ".OBJ"])
def test_mesh_round_trip_keeps_order(tmp_path, ext):
    V, F = torus_mesh(1.0, 0.3, 12, 8)
    path = tmp_path / f"torus{ext}"
    save_mesh(path, V, F)
    g = load_geometry(path)
    assert g.kind == "mesh"
    np.testing.assert_allclose(g.vertices, V, atol=1e-6)
    np.testing.assert_array_equal(g.faces, F)


def test_stl_round_trip_merges_corners(tmp_path):
    V, F = torus_mesh(1.0, 0.3, 12, 8)
    save_mesh(tmp_path / "t.stl", V, F)
    g = load_geometry(tmp_path / "t.stl")
    assert g.vertices.shape == V.shape and g.faces.shape == F.shape
    assert topology.is_watertight(g.faces)
    assert topology.genus(g.vertices, g.faces) == 1
    assert topology.signed_volume(g.vertices, g.faces) == pytest.approx(
        topology.signed_volume(V, F), rel=1e-5
    )


def test_ascii_stl_and_binary_stl_that_starts_with_solid(tmp_path):
    V, F = box_mesh(1.0)
    tri = V[F]
    lines = ["solid box"]
    for t in tri:
        lines += ["  facet normal 0 0 0", "    outer loop"]
        lines += [f"      vertex {x:.6f} {y:.6f} {z:.6f}" for x, y, z in t]
        lines += ["    endloop", "  endfacet"]
    lines.append("endsolid box")
    (tmp_path / "a.stl").write_text("\n".join(lines))
    g = load_geometry(tmp_path / "a.stl")
    assert g.vertices.shape == (8, 3) and g.faces.shape == (12, 3)
    assert topology.signed_volume(g.vertices, g.faces) == pytest.approx(8.0)

    save_mesh(tmp_path / "b.stl", V, F)
    data = bytearray((tmp_path / "b.stl").read_bytes())
    data[:80] = b"solid but binary".ljust(80)
    (tmp_path / "b.stl").write_bytes(bytes(data))
    g = load_geometry(tmp_path / "b.stl")
    assert topology.is_watertight(g.faces) and len(g.vertices) == 8


@pytest.mark.parametrize("blank", [b"\n", b" \t\r\n"])
def test_ascii_stl_blank_lines_cost_linear_time(tmp_path, blank):
    """Regression: ``^\\s*vertex`` with re.M let ``\\s*`` run on across a whole run of blank
    lines from every line start, O(lines^2): 100k blank lines took about a minute."""
    facet = (
        b"facet normal 0 0 1\n outer loop\n  vertex 0 0 0\n  vertex 1 0 0\n  vertex 0 1 0\n"
        b" endloop\nendfacet\n"
    )
    path = tmp_path / "blank.stl"
    path.write_bytes(b"solid x\n" + blank * 100_000 + facet + blank * 100_000 + b"endsolid x\n")
    t = time.perf_counter()
    g = load_geometry(path)
    elapsed = time.perf_counter() - t
    assert g.vertices.tolist() == [[0, 0, 0], [1, 0, 0], [0, 1, 0]]
    assert g.faces.tolist() == [[0, 1, 2]]
    assert elapsed < 2.0, f"{elapsed:.2f} s for 200k blank lines"


def test_obj_polygons_negative_indices_and_slashes(tmp_path):
    text = """# a quad and a pentagon
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vn 0 0 1
f 1/1/1 2/1/1 3/1/1 4/1/1
v 2 0 0
v 3 0 0
v 3 1 0
v 2.5 2 0
v 2 1 0
f -5 -4 -3 -2 -1
o other  # comment
"""
    (tmp_path / "p.obj").write_text(text)
    g = load_geometry(tmp_path / "p.obj")
    assert g.kind == "mesh"
    assert g.faces.tolist() == [[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7], [4, 7, 8]]


def test_obj_points_with_normals_and_curves(tmp_path):
    P = torus_points(50, seed=1)
    N = P / np.linalg.norm(P, axis=1, keepdims=True)
    body = "".join(f"v {x} {y} {z}\n" for x, y, z in P)
    (tmp_path / "pts.obj").write_text(body + "".join(f"vn {x} {y} {z}\n" for x, y, z in N))
    g = load_geometry(tmp_path / "pts.obj")
    assert g.kind == "points"
    np.testing.assert_allclose(g.vertices, P)
    np.testing.assert_allclose(g.normals, N)

    (tmp_path / "bare.obj").write_text(body + "vn 0 0 1\n")  # not one normal per vertex
    assert load_geometry(tmp_path / "bare.obj").normals is None

    V, _ = curve_circle(6)
    text = "".join(f"v {x} {y} {z}\n" for x, y, z in V) + "l 1 2 3 4\nl 4 5 6 1\n"
    (tmp_path / "c.obj").write_text(text)
    c = load_geometry(tmp_path / "c.obj")
    assert c.kind == "curve"
    assert c.edges.tolist() == [[0, 1], [1, 2], [2, 3], [3, 4], [4, 5], [5, 0]]


_MIXED_OBJ = """# mixed polygons and index forms, as exporters write them
mtllib m.mtl
o first
v 0 0 0
v 1 0 0 1.0
v 1 1 0 0.5 0.5 0.5
v\t0 1 0
  v   0.5  2   0  \t
vt 0 0
vt 1 0
vn 0 0 1
vn 0 0 -1
usemtl red
f 1/1/1 2/2/1 3/2/1
f 1//2 3//2 4//2 5//2
s off
f 1/1 2/2 3/1 4/2 5/1
o second
v 2 0 0
v 3 0 0
v 3 1 0
f\t-3 -2\t-1
f 6/1/1 7 -1//2  # a comment after a face
l 1 2
"""
_MIXED_FACES = [
    [0, 1, 2],
    [0, 2, 3], [0, 3, 4],  # quad+1: fan from its first corner
    [0, 1, 2], [0, 2, 3], [0, 3, 4],
    [5, 6, 7],
    [5, 6, 7],
]  # fmt: skip


def test_obj_mixed_polygons_and_index_forms(tmp_path):
    (tmp_path / "m.obj").write_text(_MIXED_OBJ)
    g = load_geometry(tmp_path / "m.obj")
    assert g.kind == "mesh"
    np.testing.assert_array_equal(
        g.vertices,
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 2, 0], [2, 0, 0], [3, 0, 0], [3, 1, 0]],
    )  # w and vertex colours are not coordinates
    assert g.faces.tolist() == _MIXED_FACES  # the file's face order; 'l' ignored beside faces


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_obj_crlf_and_cr_read_as_lf(tmp_path, newline):
    (tmp_path / "lf.obj").write_text(_MIXED_OBJ)
    (tmp_path / "crlf.obj").write_bytes(_MIXED_OBJ.replace("\n", newline).encode())
    a, b = load_geometry(tmp_path / "lf.obj"), load_geometry(tmp_path / "crlf.obj")
    np.testing.assert_array_equal(a.vertices, b.vertices)
    assert b.faces.tolist() == _MIXED_FACES
    bad = "v 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1 2 4\n".replace("\n", newline)
    (tmp_path / "bad.obj").write_bytes(bad.encode())
    with pytest.raises(BadInputError, match="line 5: vertex index 4"):
        load_geometry(tmp_path / "bad.obj")


def test_obj_line_continuation_and_forms_only_python_reads(tmp_path):
    """A continued line, and a number numpy's text parser refuses but Python's float takes
    (the file then goes through the line-by-line reader): same mesh as the plain file."""
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nf 1 2 \\\n 3 4\n"
    (tmp_path / "c.obj").write_text(text)
    assert load_geometry(tmp_path / "c.obj").faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    (tmp_path / "u.obj").write_text(text.replace("v 1 1 0", "v 1 1_0 0"))
    g = load_geometry(tmp_path / "u.obj")
    assert g.vertices[2].tolist() == [1, 10, 0] and g.faces.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_obj_negative_indices_count_back_from_their_line(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\nv 0 0 1\nf -4 -2 -1\nf 1 -1 2\n"
    (tmp_path / "n.obj").write_text(text)
    g = load_geometry(tmp_path / "n.obj")
    assert g.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 1]]


def test_obj_polylines_become_curve_edges(tmp_path):
    text = "v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 0 2 0\nl 1/1 2 3\nl -2 -1\nl 4\nl 5 1\n"
    (tmp_path / "l.obj").write_text(text)
    g = load_geometry(tmp_path / "l.obj")
    assert g.kind == "curve"
    # no edge joins one polyline to the next; a one-vertex polyline has no edge
    assert g.edges.tolist() == [[0, 1], [1, 2], [3, 4], [4, 0]]


@pytest.mark.parametrize(
    "face, words",
    [
        ("f 1 2 4", ["line 6:", "vertex index 4", "only 3 vertices"]),
        ("f 1/1/1 2/1/1 9/1/1", ["line 6:", "vertex index 9", "only 3 vertices"]),
        ("f -1 -2 -4", ["line 6:", "vertex index -4", "only 3 vertices come before"]),
        ("l 1 3 5", ["line 6:", "vertex index 5"]),
        ("f 1 0 2", ["line 6:", "vertex index 0", "start at 1"]),
        ("f 1 x 2", ["line 6:", "'x' is not a vertex index"]),
        ("f 1 /2 3", ["empty vertex index"]),
        ("f 1 - 2", ["line 6:", "'-' is not a vertex index"]),
    ],
)
def test_obj_bad_index_names_its_line(tmp_path, face, words):
    text = f"# header\nv 0 0 0\nv 1 0 0\n\nv 0 1 0\n{face}\n"
    (tmp_path / "bad.obj").write_text(text)
    with pytest.raises(BadInputError) as info:
        load_geometry(tmp_path / "bad.obj")
    msg = str(info.value)
    assert "\n" not in msg and "bad.obj" in msg
    for w in words:
        assert w in msg, msg


@pytest.mark.parametrize("blank", [b"\n", b" \t\r\n", b"# c\n"])
def test_obj_blank_lines_cost_linear_time(tmp_path, blank):
    path = tmp_path / "blank.obj"
    path.write_bytes(b"v 0 0 0\n" + blank * 100_000 + b"v 1 0 0\nv 0 1 0\n" + blank * 100_000
                     + b"f 1 2 3\n")  # fmt: skip
    t = time.perf_counter()
    g = load_geometry(path)
    elapsed = time.perf_counter() - t
    assert g.faces.tolist() == [[0, 1, 2]] and len(g.vertices) == 3
    assert elapsed < 2.0, f"{elapsed:.2f} s for 200k blank lines"


def test_ply_ascii_with_quads_and_extra_properties(tmp_path):
    text = """ply
format ascii 1.0
comment made by hand
element vertex 5
property float x
property float y
property float z
property uchar red
element face 2
property list uchar int vertex_indices
property int flags
end_header
0 0 0 255
1 0 0 0
1 1 0 0
0 1 0 0
0.5 0.5 1 9
4 0 1 2 3 7
3 0 1 4 0
"""
    (tmp_path / "q.ply").write_text(text)
    g = load_geometry(tmp_path / "q.ply")
    assert g.kind == "mesh"
    assert g.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4]]


@pytest.mark.parametrize("endian", ["<", ">"])
def test_ply_binary_mixed_polygons(tmp_path, endian):
    name = "binary_little_endian" if endian == "<" else "binary_big_endian"
    V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0.5, 0.5, 1]], dtype=np.float64)
    head = (
        f"ply\nformat {name} 1.0\nelement vertex 5\nproperty double x\nproperty double y\n"
        "property double z\nelement face 2\nproperty list uchar uint vertex_indices\nend_header\n"
    )
    body = V.astype(endian + "f8").tobytes()
    body += struct.pack(endian + "B4I", 4, 0, 1, 2, 3) + struct.pack(endian + "B3I", 3, 0, 1, 4)
    (tmp_path / "m.ply").write_bytes(head.encode() + body)
    g = load_geometry(tmp_path / "m.ply")
    np.testing.assert_allclose(g.vertices, V)
    assert g.faces.tolist() == [[0, 1, 2], [0, 2, 3], [0, 1, 4]]


def test_ply_and_xyz_points_with_normals(tmp_path):
    P = torus_points(40, seed=2)
    N = np.tile([0.0, 0.0, 1.0], (40, 1))
    for ext in (".ply", ".xyz"):
        save_points(tmp_path / f"p{ext}", P, N)
        g = load_geometry(tmp_path / f"p{ext}")
        assert g.kind == "points"
        np.testing.assert_allclose(g.vertices, P, atol=1e-6)
        np.testing.assert_allclose(g.normals, N)
    save_points(tmp_path / "bare.xyz", P)
    g = load_geometry(tmp_path / "bare.xyz")
    assert g.normals is None and g.vertices.shape == (40, 3)


def test_ply_edges_become_a_curve(tmp_path):
    V, E = curve_circle(4)
    head = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
    head += "property float z\nelement edge 4\nproperty int vertex1\nproperty int vertex2\n"
    body = "".join(f"{x} {y} {z}\n" for x, y, z in V) + "".join(f"{a} {b}\n" for a, b in E)
    (tmp_path / "c.ply").write_text(head + "end_header\n" + body)
    g = load_geometry(tmp_path / "c.ply")
    assert g.kind == "curve" and g.edges.tolist() == E.tolist()


def test_off_variants(tmp_path):
    (tmp_path / "a.off").write_text("OFF 4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    assert load_geometry(tmp_path / "a.off").faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    (tmp_path / "b.off").write_text(
        "COFF\n# c\n3 0 0\n0 0 0 1 1 1 1\n1 0 0 1 1 1 1\n0 2 0 1 1 1 1\n"
    )
    g = load_geometry(tmp_path / "b.off")
    assert g.kind == "points" and g.vertices.shape == (3, 3)


def test_open_monkey_round_trip_keeps_boundaries(tmp_path):
    V, F = open_monkey_like()
    save_mesh(tmp_path / "m.ply", V, F)
    g = load_geometry(tmp_path / "m.ply")
    np.testing.assert_array_equal(g.faces, F)
    assert len(topology.boundary_edges(g.faces)) > 0


# -- bad files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("a.fbx", b"whatever", ["unknown file type '.fbx'", "Supported"]),
        ("noext", b"v 0 0 0", ["unknown file type"]),
        ("e.obj", b"", ["empty"]),
        ("w.obj", b"  \n\n", ["empty"]),
        ("n.obj", b"v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n", ["NaN"]),
        ("r.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 7\n", ["only 3 vertices"]),
        ("z.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", ["line 4", "start at 1"]),
        ("g.obj", b"v 0 0 zero\n", ["not numbers"]),
        ("s.obj", b"v 0 0\n", ["line 1", "x, y and z"]),
        ("nov.obj", b"# only a comment\nvt 0 0\n", ["no vertices"]),
        ("h.ply", b"ply\nformat ascii 1.0\nelement vertex 1\n", ["end_header"]),
        ("x.ply", b"PLY?", ["not a PLY file"]),
        (
            "t.ply",
            b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nproperty float x\n"
            b"property float y\nproperty float z\nend_header\n" + b"\0" * 20,
            ["truncated"],
        ),
        (
            "s.ply",
            b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n0 0 0\n1 1 1\n",
            ["ends early"],
        ),
        ("t.stl", b"\0" * 80 + struct.pack("<I", 10) + b"\0" * 100, ["truncated"]),
        ("e.stl", b"solid x\nendsolid x\n", ["no triangles"]),
        ("b.off", b"NOT OFF\n", ["not an OFF file"]),
        ("t.off", b"OFF\n4 1 0\n0 0 0\n", ["truncated"]),
        ("c.xyz", b"0 0 0\n1 1 1 0 0 1\n", ["different numbers of columns"]),
        ("d.xyz", b"0 0 0 0\n1 1 1 1\n", ["4 columns"]),
        ("f.xyz", b"0 0 0\n0 0 0\n", ["same place"]),
        ("g.xyz", b"# only a comment\n", ["no points"]),
        (
            "n.ply",
            b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n0 0 0\n1 one 1\n",
            ["not numbers"],
        ),
        (
            "w.ply",
            b"ply\nformat ascii 1.0\nelement vertex 2\nproperty float x\nproperty float y\n"
            b"property float z\nend_header\n0 0 0 5\n1 1 1 5\n",
            ["4 numbers", "announces 3"],
        ),
        ("t.glb", b"glTF\x02\x00\x00\x00\xff\xff\x00\x00JSON", ["GLB", "malformed"]),
        ("z.3mf", b"PK not really a zip", ["3MF", "malformed"]),
        ("j.gltf", b'{"asset": {"version": "2.0"}, "meshes": [', ["glTF", "malformed"]),
    ],
)
def test_bad_files_raise_bad_input_error(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInputError) as info:
        load_geometry(path)
    msg = str(info.value)
    for w in words:
        assert w in msg, msg
    if name != "noext":
        assert name in msg or name.split(".")[-1] in msg


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(BadInputError, match="does not exist"):
        load_geometry(tmp_path / "missing.obj")
    (tmp_path / "dir.obj").mkdir()
    with pytest.raises(BadInputError, match="folder"):
        load_geometry(tmp_path / "dir.obj")


def test_save_mesh_refuses_unknown_extension_and_bad_arrays(tmp_path):
    V, F = box_mesh()
    with pytest.raises(BadInputError, match="unknown mesh file type"):
        save_mesh(tmp_path / "x.fbx", V, F)
    with pytest.raises(BadInputError, match="out of range"):
        save_mesh(tmp_path / "x.obj", V, F + 8)
    with pytest.raises(BadInputError, match=r"\(m, 3\)"):
        save_mesh(tmp_path / "x.obj", V, np.zeros((2, 4), dtype=int))


# -- primitives -------------------------------------------------------------------------------


def test_primitives_are_what_they_claim():
    V, F = icosphere(2.0, 2, center=(1.0, 0.0, 0.0))
    assert V.shape == (162, 3) and F.shape == (320, 3)
    np.testing.assert_allclose(np.linalg.norm(V - [1.0, 0.0, 0.0], axis=1), 2.0)
    assert topology.signed_volume(V, F) > 0

    V, F = torus_mesh(1.0, 0.25, 64, 32)
    assert topology.signed_volume(V, F) == pytest.approx(2 * np.pi**2 * 0.25**2, rel=0.02)

    P = torus_points(500, 1.0, 0.25, seed=3)
    tube = np.hypot(np.linalg.norm(P[:, :2], axis=1) - 1.0, P[:, 2])
    np.testing.assert_allclose(tube, 0.25)
    np.testing.assert_array_equal(torus_points(20, seed=4), torus_points(20, seed=4))

    V, E = curve_circle(10, 2.0)
    np.testing.assert_allclose(np.linalg.norm(V, axis=1), 2.0)
    assert np.all(np.bincount(E.ravel()) == 2)


def test_open_monkey_like_is_awkward():
    V, F = open_monkey_like()
    assert not topology.is_watertight(F)
    assert len(topology.boundary_edges(F)) > 0
    assert topology.connected_components(F) == 5  # head, two eyes, two ears
    # the eyes poke through the head: some eye vertices are inside the unit head, some outside
    eyes = V[np.abs(V[:, 1] + 0.9) < 0.31]
    r = np.linalg.norm(eyes, axis=1)
    assert (r < 0.99).any() and (r > 1.01).any()
    Geometry.mesh(V, F).validate()


@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_ply_scan_with_normals_and_colours_reads_the_normals(tmp_path, fmt):
    P, N = sphere_cloud(500, axes=(1.0, 0.6, 0.4))
    write_scan_ply(tmp_path / "scan.ply", P, N, fmt)
    g = load_geometry(tmp_path / "scan.ply")
    assert g.kind == "points" and g.faces is None
    np.testing.assert_allclose(g.vertices, P, atol=1e-6)
    np.testing.assert_allclose(g.normals, N, atol=1e-6)
    g.validate()


def test_xyz_with_commas_and_comments(tmp_path):
    (tmp_path / "c.xyz").write_text("# scanner\n0,0,0,0,0,1\n1,0,0, 0,0,1  # edge\n0,2,0,0,0,1\n")
    g = load_geometry(tmp_path / "c.xyz")
    np.testing.assert_allclose(g.vertices, [[0, 0, 0], [1, 0, 0], [0, 2, 0]])
    np.testing.assert_allclose(g.normals, np.tile([0.0, 0.0, 1.0], (3, 1)))


# -- scenes: glTF / GLB / 3MF ----------------------------------------------------------------


def _scene():
    """A rotated, moved box and a scaled ball placed twice; and the triangles expected."""
    import trimesh

    box_V, box_F = box_mesh(1.0)
    ball_V, ball_F = icosphere(0.5, 1)
    turn = trimesh.transformations.rotation_matrix(0.3, [0, 0, 1])
    turn[:3, 3] = [3.0, 0.0, 0.0]
    big = np.diag([2.0, 2.0, 2.0, 1.0])
    moved = np.eye(4)
    moved[:3, 3] = [0.0, -4.0, 1.0]
    scene = trimesh.Scene()
    parts = [("box", box_V, box_F, turn), ("ball", ball_V, ball_F, big)]
    parts.append(("ball", ball_V, ball_F, moved))
    for i, (name, V, F, T) in enumerate(parts):
        mesh = trimesh.Trimesh(V, F, process=False)
        scene.add_geometry(mesh, node_name=f"n{i}", geom_name=name, transform=T)
    triangles = np.concatenate([trimesh.transform_points(V, T)[F] for _, V, F, T in parts])
    ball = topology.signed_volume(ball_V, ball_F)
    volume = 8.0 + 8 * ball + ball
    return scene, triangles, volume


def _write_scene(scene, path: Path) -> None:
    if path.suffix == ".gltf":  # the JSON and its buffers, side by side
        for name, data in scene.export(file_type="gltf").items():
            (path.parent / (path.name if name.endswith(".gltf") else name)).write_bytes(data)
    else:
        path.write_bytes(scene.export(file_type=path.suffix[1:]))


def _sorted_triangles(T: np.ndarray) -> np.ndarray:
    rows = np.round(T.reshape(len(T), 9), 5)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("ext", [".glb", ".gltf", ".3mf", ".GLB"])
def test_scene_files_are_flattened_with_each_node_transform(tmp_path, ext):
    scene, triangles, volume = _scene()
    path = tmp_path / f"scene{ext}"
    _write_scene(scene, path)
    g = load_geometry(path)
    assert g.kind == "mesh" and g.normals is None
    assert g.vertices.shape == (8 + 42 + 42, 3) and g.faces.shape == (12 + 80 + 80, 3)
    # the same triangles, in place and with their orientation (corner order) kept
    np.testing.assert_allclose(
        _sorted_triangles(g.vertices[g.faces]), _sorted_triangles(triangles), atol=1e-5
    )
    assert topology.signed_volume(g.vertices, g.faces) == pytest.approx(volume, rel=1e-5)
    # each part stays a closed mesh of its own: vertices are not split or merged across parts
    assert topology.is_watertight(g.faces) and topology.connected_components(g.faces) == 3


def test_glb_point_cloud_reads_as_points(tmp_path):
    import trimesh

    P = torus_points(200, seed=5)
    T = np.eye(4)
    T[:3, 3] = [1.0, 2.0, 3.0]
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.PointCloud(P), node_name="scan", transform=T)
    (tmp_path / "p.glb").write_bytes(scene.export(file_type="glb"))
    g = load_geometry(tmp_path / "p.glb")
    assert g.kind == "points" and g.faces is None
    np.testing.assert_allclose(g.vertices, P + [1.0, 2.0, 3.0], atol=1e-5)


def test_lying_scene_files_raise_bad_input_error(tmp_path):
    scene, _, _ = _scene()
    data = scene.export(file_type="glb")
    (tmp_path / "cut.glb").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadInputError, match=r"'cut.glb'.*GLB"):
        load_geometry(tmp_path / "cut.glb")

    _write_scene(scene, tmp_path / "m.gltf")
    for bin_file in tmp_path.glob("*.bin"):
        bin_file.unlink()
    with pytest.raises(BadInputError, match=r"'m.gltf'.*glTF"):
        load_geometry(tmp_path / "m.gltf")

    # an accessor that announces far more vertices than its buffer holds
    _write_scene(scene, tmp_path / "l.gltf")
    tree = json.loads((tmp_path / "l.gltf").read_text())
    tree["accessors"][0]["count"] = 10**12
    (tmp_path / "l.gltf").write_text(json.dumps(tree))
    with pytest.raises(BadInputError, match="'l.gltf'") as info:
        load_geometry(tmp_path / "l.gltf")
    assert "\n" not in str(info.value)

    with zipfile.ZipFile(tmp_path / "e.3mf", "w") as z:
        z.writestr("3D/3dmodel.model", "<model><resources></resources></model>")
    with pytest.raises(BadInputError, match="'e.3mf'"):
        load_geometry(tmp_path / "e.3mf")

    empty = tmp_path / "empty.gltf"
    empty.write_text('{"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}]}')
    with pytest.raises(BadInputError, match="'empty.gltf'.*no triangles and no points"):
        load_geometry(empty)


def test_reading_library_is_not_imported_by_io_the_worker_or_the_addon():
    code = (
        "import sys; import lipsdf_blender.core.formats.files, lipsdf_blender.worker.server, "
        "lipsdf_blender.worker.client, lipsdf_blender.jobrunner, "
        "lipsdf_blender.blender.plans.build; "
        "bad = [m for m in ('trimesh', 'lxml', 'networkx') if m in sys.modules]; "
        "assert not bad, bad"
    )
    root = Path(__file__).resolve().parents[1]
    p = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
