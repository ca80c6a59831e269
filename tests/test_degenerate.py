"""Inputs with no inside or no shape: one line that says what to do, and nothing is made.

Issue 23, as a new user met it: a flat square, a tetrahedron at 1e30, four points on a line and
a scanned plane went through the command line as a traceback or as a surface no one asked for
(a slab under the plane). Each is a case here, at the core and through the CLI, plus a property
test that sends flat, collinear, coincident, huge, tiny and far-apart inputs through labelling
and training: a finite field or a ``LipSDFError`` of one line, never anything else.
"""

import numpy as np
import pytest
import torch
from conftest import sphere_cloud
from hypothesis import given, settings
from hypothesis import strategies as st

from lipsdf_blender.cli.main import main
from lipsdf_blender.core.errors import BadInputError, LipSDFError
from lipsdf_blender.core.formats.files import save_mesh
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.cloud import check_encloses, prepare_cloud
from lipsdf_blender.core.inputs.geometry import Geometry, principal_extents
from lipsdf_blender.core.inputs.normals import winding_number
from lipsdf_blender.core.inputs.winding import mesh_winding_number
from lipsdf_blender.core.surfaces.mesh_distance import MeshDistance
from lipsdf_blender.core.surfaces.remesh import remesh
from lipsdf_blender.core.training.presets import SampleConfig
from lipsdf_blender.core.training.sampling import make_samples, normalization, sample_on_geometry
from lipsdf_blender.core.training.train import train_field

#: A network, schedule and sample count that train in well under a second on one core.
QUICK = dict(depth=4, width=16, steps=5, batch_size=256)
FEW = SampleConfig(n_uniform=2000, n_surface=3000)

TET_V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
TET_F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])  # outward
SQUARE_V = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.0]])
SQUARE_F = np.array([[0, 1, 2], [0, 2, 3]])
LINE = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2], [3, 3, 3.0]])


def plane_points(n=5000, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.c_[rng.uniform(-1, 1, (n, 2)), rng.normal(0.0, noise, n) if noise else np.zeros(n)]


def normalised(geom):
    c, s = normalization(geom)
    return Geometry(geom.kind, (geom.vertices - c) * s, geom.faces, geom.normals, geom.edges)


def one_line(message: str) -> str:
    assert message.strip() and len(message.splitlines()) == 1, repr(message)
    return message


def refused(geom, match, **kw):
    with pytest.raises(BadInputError, match=match) as info:
        train_field(geom, "fast", device="cpu", samples=FEW, **QUICK, **kw)
    return one_line(str(info.value))


# -- meshes -----------------------------------------------------------------------------------


def test_a_flat_square_is_refused_naming_unsigned_mode():
    g = Geometry.mesh(SQUARE_V, SQUARE_F)
    with pytest.raises(BadInputError, match="encloses no volume.*unsigned mode"):
        make_samples(normalised(g), "signed", FEW)
    refused(g, "encloses no volume.*unsigned mode")
    # Unsigned mode is what the message offers, and it works.
    field = train_field(g, "fast", mode="unsigned", device="cpu", samples=FEW, **QUICK)
    assert np.isfinite(field.evaluate(SQUARE_V)).all()


def test_an_inside_out_mesh_is_refused_saying_to_flip_its_normals():
    refused(Geometry.mesh(TET_V, TET_F[:, ::-1]), "inside out.*Recalculate Outside")


@pytest.mark.parametrize("s", [1e30, 1e-20])
def test_winding_numbers_do_not_depend_on_scale(s):
    Q = np.array([[0.1, 0.1, 0.1], [2.0, 2.0, 2.0]])
    np.testing.assert_allclose(mesh_winding_number(TET_V * s, TET_F, Q * s), [1, 0], atol=1e-3)
    P, N = sphere_cloud(400)
    A = np.full(len(P), 4 * np.pi * 0.7**2 / len(P))
    W = winding_number(P * s, N, A * s**2, np.array([[0, 0, 0], [2, 0, 0.0]]) * s)
    np.testing.assert_allclose(W, [1, 0], atol=0.1)  # first-order far field: 1.06 at 1


@pytest.mark.parametrize("s", [1e30, 1e-20])
def test_exact_offsets_measure_inside_as_inside_at_any_scale(s):
    # Offsets, hollowing and thickness take their sign from this distance.
    P = np.array([[0.1, 0.1, 0.1], [1.0, 1.0, 1.0]])
    d = MeshDistance(TET_V * s, TET_F)(torch.from_numpy(P * s)).numpy() / s
    np.testing.assert_allclose(d, [-0.1, 1 / np.sqrt(3) * 2], rtol=1e-6)


def test_a_tetrahedron_remeshes_the_same_at_1e30_and_1e_minus_20():
    boxes = {}
    for s in (1.0, 1e30, 1e-20):
        field = train_field(
            Geometry.mesh(TET_V * s, TET_F),
            "fast",
            device="cpu",
            samples=FEW,
            **dict(QUICK, steps=150),
        )
        r = remesh(field, 32, True, torch.device("cpu"))
        assert len(r.faces) > 0, f"no surface at scale {s:g}"
        boxes[s] = np.array([r.vertices.min(axis=0), r.vertices.max(axis=0)]) / s
    for s in (1e30, 1e-20):
        np.testing.assert_allclose(boxes[s], boxes[1.0], atol=1e-3)
    np.testing.assert_allclose(boxes[1.0], [[0, 0, 0], [1, 1, 1]], atol=0.05)


def test_a_thin_closed_box_still_trains_with_inside_labels():
    # 2 % as thick as it is wide: thin, but a real solid.
    V, F = primitives.box_mesh(half_size=(0.5, 0.5, 0.01))
    g = Geometry.mesh(V, F)
    s = make_samples(normalised(g), "signed", FEW)
    inner = s.points[s.labels < 0]
    assert len(inner) > 0.3 * len(s.labels)
    assert np.abs(inner[:, 2]).max() <= 0.02 + 1e-6  # normalised half-thickness: 0.02
    field = train_field(g, "fast", device="cpu", samples=FEW, **QUICK)
    assert np.isfinite(field.evaluate(np.zeros((1, 3)))).all()
    # The same plate as a scan is not taken for a flat patch either.
    P = sample_on_geometry(g, 20_000, np.random.default_rng(0))
    check_encloses(P)
    assert len(prepare_cloud(P).points) > 1000


def test_coordinates_beyond_32_bit_range_are_refused_at_validation():
    with pytest.raises(BadInputError, match="Scale the object down"):
        Geometry.mesh(TET_V * 1e37, TET_F).validate()
    with pytest.raises(BadInputError, match="Scale the object up"):
        Geometry.mesh(TET_V * 1e-35, TET_F).validate()


# -- point clouds -----------------------------------------------------------------------------


def test_collinear_points_are_refused():
    refused(Geometry.points(LINE), "lie on one line")


def test_points_on_a_plane_are_refused_naming_unsigned_mode():
    message = refused(Geometry.points(plane_points()), "flat.*unsigned mode")
    assert "encloses no volume" in message
    # A scan of a plane is as thick as its noise: still flat.
    refused(Geometry.points(plane_points(noise=0.005)), "flat.*unsigned mode")


def test_principal_extents_of_a_line_a_plane_and_a_box():
    assert principal_extents(LINE)[1:] == pytest.approx([0, 0], abs=1e-12)
    assert principal_extents(plane_points())[2] == pytest.approx(0, abs=1e-12)
    V, _ = primitives.box_mesh(half_size=(2.0, 1.0, 0.5))
    np.testing.assert_allclose(principal_extents(V * 1e30) / 1e30, [4, 2, 1], rtol=1e-9)


# -- the command line -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, write, words",
    [
        ("square.obj", lambda p: save_mesh(p, SQUARE_V, SQUARE_F), "unsigned mode"),
        ("line.xyz", lambda p: np.savetxt(p, LINE), "one line"),
        ("plane.xyz", lambda p: np.savetxt(p, plane_points(2000)), "unsigned mode"),
    ],
)
def test_the_cli_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, name, write, words):
    src, out = tmp_path / name, tmp_path / "out.obj"
    write(src)
    code = main(["remesh", str(src), "-o", str(out), "--steps", "5", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert one_line(err).startswith("lipsdf: error:") and words in err


def test_the_cli_remeshes_a_tetrahedron_at_1e30(tmp_path, capsys):
    src, out = tmp_path / "tet.obj", tmp_path / "out.obj"
    save_mesh(src, TET_V * 1e30, TET_F)
    argv = ["remesh", str(src), "-o", str(out), "--steps", "150", "--resolution", "32"]
    assert main([*argv, "--device", "cpu"]) == 0
    assert out.exists()


# -- property: degenerate inputs fail on purpose or not at all -----------------------------


@st.composite
def degenerate_inputs(draw):
    kind = draw(st.sampled_from(["flat", "line", "coincident", "clusters", "sphere", "tet"]))
    scale = draw(st.sampled_from([1e-20, 1e-6, 1.0, 1e6, 1e20]))
    shift = draw(st.sampled_from([0.0, 1.0, -1e3]))
    n = draw(st.integers(1, 200))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "flat":
        P = plane_points(max(n, 3), seed=int(rng.integers(1 << 16)))
    elif kind == "line":
        P = np.outer(rng.uniform(-1, 1, n), rng.normal(size=3))
    elif kind == "coincident":
        P = np.repeat(rng.normal(size=(draw(st.integers(1, 3)), 3)), max(1, n // 3), axis=0)
    elif kind == "clusters":
        P = np.r_[sphere_cloud(max(n, 10))[0], sphere_cloud(max(n, 10))[0] + [1e4, 0, 0]]
    elif kind == "sphere":
        P = sphere_cloud(max(n, 10))[0]
    else:
        P = TET_V.copy()
    P = (P + shift) * scale
    as_mesh = draw(st.booleans())
    if as_mesh and kind == "tet":
        return Geometry.mesh(P, TET_F[:, ::-1] if draw(st.booleans()) else TET_F)
    if as_mesh and len(P) >= 3:  # a fan over the points: flat, collinear or a soup
        F = np.array([[0, i, i + 1] for i in range(1, min(len(P) - 1, 60))])
        return Geometry.mesh(P, F)
    return Geometry.points(P)


@settings(settings.get_profile("lipsdf-fuzz-sample"), max_examples=25)
@given(geom=degenerate_inputs(), mode=st.sampled_from(["signed", "unsigned"]))
def test_degenerate_inputs_give_a_field_or_one_line(geom, mode):
    tiny = SampleConfig(n_uniform=500, n_surface=600)
    try:
        field = train_field(
            geom, "fast", mode=mode, device="cpu", samples=tiny, **dict(QUICK, steps=2)
        )
    except LipSDFError as exc:
        one_line(str(exc))
        return
    lo, hi = field.bounds()
    assert np.isfinite(field.evaluate(np.array([lo, hi, 0.5 * (lo + hi)]))).all()
