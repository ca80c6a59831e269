"""The winding-number preview of a mesh or soup before its training (issue 22): closed, its
holes closed where the winding number crosses 1/2, within a cell of the input elsewhere."""

import numpy as np
import pytest

from lipsdf_blender.core.errors import BadInputError, CancelledError
from lipsdf_blender.core.fields.detail import InputSurface
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.surfaces import topology
from lipsdf_blender.core.surfaces.preview import winding_preview


def _closed_one_piece_outward(r):
    assert topology.is_watertight(r.faces)
    assert topology.connected_components(r.faces) == 1
    assert topology.signed_volume(r.vertices, r.faces) > 0


def test_a_sphere_with_a_missing_cap_is_previewed_closed_on_the_sphere():
    V, F = primitives.icosphere(1.0, 3)
    # take out every face above z = 0.7: a hole of radius ~0.7
    cap = V[F].mean(axis=1)[:, 2] > 0.7
    assert cap.sum() > 10
    r = winding_preview(InputSurface(V, F[~cap]), 32)
    _closed_one_piece_outward(r)
    h = r.stats.cell_size
    assert h == pytest.approx(2.0 / 32)
    radius = np.linalg.norm(r.vertices, axis=1)
    below = r.vertices[:, 2] < 0.6
    # where the input is: within a cell of the sphere (its flat faces lie up to 1.2 % inside)
    assert np.abs(radius[below] - 1.0).max() < h
    # across the hole the winding number's level set: a cap near the rim's plane (z 0.64 to
    # 0.7), inside the sphere, and nothing outside the sphere by more than a cell
    axis = r.vertices[(np.hypot(r.vertices[:, 0], r.vertices[:, 1]) < 0.3) & (r.vertices[:, 2] > 0)]
    assert len(axis) and axis[:, 2].min() > 0.6 and axis[:, 2].max() < 0.8
    assert radius.max() < 1.0 + h


def test_a_soup_of_unwelded_triangles_is_the_closed_shape():
    V, F = primitives.box_mesh(0.5)
    soup_V = V[F].reshape(-1, 3)
    soup_F = np.arange(len(soup_V)).reshape(-1, 3)
    r = winding_preview(InputSurface(soup_V, soup_F), 24)
    _closed_one_piece_outward(r)
    h = r.stats.cell_size
    # every vertex within a cell of the cube's surface
    inf_norm = np.abs(r.vertices).max(axis=1)
    assert np.abs(inf_norm - 0.5).max() < h
    assert topology.signed_volume(r.vertices, r.faces) == pytest.approx(1.0, rel=0.1)


def test_inputs_without_an_inside_give_an_empty_preview_and_curves_are_refused():
    V, F = primitives.icosphere(1.0, 2)
    assert winding_preview(InputSurface(V, F[:, ::-1]), 16).is_empty  # inside out
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0.0]])
    assert winding_preview(InputSurface(square, np.array([[0, 1, 2], [0, 2, 3]])), 16).is_empty
    Vc, E = primitives.curve_circle(16)
    with pytest.raises(BadInputError, match="triangles"):
        winding_preview(InputSurface(Vc, E), 16)


def test_a_cancelled_preview_raises():
    V, F = primitives.icosphere(1.0, 2)
    with pytest.raises(CancelledError):
        winding_preview(InputSurface(V, F[1:]), 16, cancel=lambda: True)
