"""Partial scans keep their detail and come out closed (issue 23).

A scan seen from one side, or missing its base, leaves the winding number between 0 and 1 far
from the points while the field closes the shape: the two witnesses disagree there. The
remesh must still be closed, keep the scanned relief where the scan is, and take only the
closure from the field; extraction must close a surface that pruning could not see.
"""

from __future__ import annotations

import igl
import numpy as np
import pytest
import torch
from conftest import TINY

from lipsdf_blender.core.fields.detail import BAND, surface_field
from lipsdf_blender.core.fields.sdf import SphereField
from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.surfaces import extract as E
from lipsdf_blender.core.surfaces import metrics, topology
from lipsdf_blender.core.surfaces.extract import cell_size, extract
from lipsdf_blender.core.surfaces.remesh import close_open_parts, remesh
from lipsdf_blender.core.training.summary import witness_summary
from lipsdf_blender.core.training.train import train_field

QUICK = dict(TINY, steps=300)
RESOLUTION = 96


def bumpy_sphere(relief=0.06):
    """A unit sphere with a relief of bumps and dents ``relief`` high (a closed mesh)."""
    V, F = primitives.icosphere(1.0, 5)
    u = V / np.linalg.norm(V, axis=1, keepdims=True)
    theta, phi = np.arccos(np.clip(u[:, 2], -1, 1)), np.arctan2(u[:, 1], u[:, 0])
    return u * (1.0 + relief * np.sin(5 * theta) * np.sin(5 * phi))[:, None], F


def distances(P, V, F):
    """Distance from each point to the mesh, as fractions of the points' diagonal."""
    diag = float(np.linalg.norm(P.max(0) - P.min(0)))
    return np.sqrt(igl.point_mesh_squared_distance(P, V, F.astype(np.int64))[0]) / diag


def remesh_scan(P, caplog):
    field = train_field(Geometry.points(P), "fast", device="cpu", seed=0, **QUICK)
    with caplog.at_level("WARNING"):
        r = remesh(field, RESOLUTION)
    assert not [m for m in caplog.messages if "field's own surface" in m]  # no fall-back
    return field, r


@pytest.fixture(scope="module")
def relief():
    return bumpy_sphere()


def test_scan_from_one_side_is_closed_and_keeps_its_relief(relief, caplog):
    V, F = relief
    P, _ = metrics.sample_surface(V, F, 20_000, seed=0)
    P = P[P[:, 2] > 0.0]  # what a scanner above it sees: the upper half
    field, r = remesh_scan(P, caplog)
    assert topology.is_watertight(r.faces) and topology.connected_components(r.faces) == 1
    assert topology.signed_volume(r.vertices, r.faces) > 0
    d = distances(P, r.vertices, r.faces)
    # The relief (6 % of the radius, 2 % of the diagonal) is kept to a fraction of a cell
    # (a cell is 1 % of the diagonal here).
    assert d.mean() <= 0.0006 and np.quantile(d, 0.9) <= 0.0012, (d.mean(), np.quantile(d, 0.9))
    # The field alone smooths it away, several times farther from the scan (the test can fail).
    raw = remesh(field, RESOLUTION, detail=False)
    d_raw = distances(P, raw.vertices, raw.faces)
    assert d_raw.mean() >= 4 * d.mean() and np.quantile(d_raw, 0.9) >= 4 * np.quantile(d, 0.9)
    # About half of the surface is the scan, the rest the field's closure of the open side.
    assert 0.4 <= r.detail_share <= 0.75, r.detail_share
    # That closure is the field's own surface, not a sheet where the witnesses met.
    below = r.vertices[r.vertices[:, 2] < -0.3]
    assert len(below) > 100
    assert distances(np.vstack([P, below]), raw.vertices, raw.faces)[len(P) :].max() <= 0.01


def test_scan_missing_its_base_keeps_the_detail_everywhere_it_was_seen(relief, caplog):
    V, F = relief
    P, _ = metrics.sample_surface(V, F, 20_000, seed=1)
    z = P[:, 2]
    P = P[z > z.min() + 0.15 * (z.max() - z.min())]  # the lowest 15 % never scanned
    field, r = remesh_scan(P, caplog)
    assert topology.is_watertight(r.faces) and topology.connected_components(r.faces) == 1
    d = distances(P, r.vertices, r.faces)
    assert d.mean() <= 0.0006 and np.quantile(d, 0.9) <= 0.0012, (d.mean(), np.quantile(d, 0.9))
    # Where the scan is (within a cell of its points), the surface is the scan's own: the
    # field only closes the base.
    band = max(BAND * field.surface.diagonal(), 2.5 * cell_size(field, RESOLUTION))
    target = surface_field(field, band=band)
    seen = target.surface.distance(r.vertices) <= r.stats.cell_size
    _, area = topology.face_normals(r.vertices, r.faces)
    vertex_area = np.zeros(len(r.vertices))
    np.add.at(vertex_area, r.faces.ravel(), np.repeat(area / 3, 3))
    exact = target.exact(r.vertices)
    assert vertex_area[seen & exact].sum() >= 0.97 * vertex_area[seen].sum()
    assert 0.7 <= r.detail_share <= 0.97, r.detail_share


class _BlindField(SphereField):
    """A sphere whose pruning bounds see only its upper half: below, they say no surface."""

    def prune_bounds(self, x, levels):
        f = self(x).double()[:, None] - torch.as_tensor(np.asarray(levels), dtype=torch.float64)
        blind = (x[:, 2] < -0.2).double()[:, None] * 1e9
        return f.abs() + blind, f + blind


@pytest.mark.parametrize("loop", ["numpy", "tensor"])
def test_extraction_follows_a_surface_pruning_did_not_see(loop, monkeypatch):
    if loop == "tensor":  # the CUDA loop, run on the CPU (as tests/test_extract.py does)
        monkeypatch.setattr(E, "_cuda_device", lambda d: torch.device("cpu"))
    radius = 0.8
    r = extract(_BlindField(radius=radius), 0.0, resolution=48)
    full = extract(SphereField(radius=radius), 0.0, resolution=48)
    assert topology.is_watertight(r.faces) and topology.connected_components(r.faces) == 1
    # The same closed sphere as when pruning sees everything, vertex for vertex.
    assert len(r.vertices) == len(full.vertices) and len(r.faces) == len(full.faces)
    np.testing.assert_allclose(
        np.sort(r.vertices, axis=0), np.sort(full.vertices, axis=0), atol=1e-9
    )


def test_only_open_pieces_give_way_to_the_field():
    # A closed box far away and an open cap (a sphere without its bottom).
    Vb, Fb = primitives.box_mesh(0.3, center=(3.0, 0.0, 0.0))
    Vs, Fs = primitives.icosphere(1.0, 2)
    Fs_open = Fs[Vs[Fs].mean(axis=1)[:, 2] > -0.5]
    V = np.vstack([Vb, Vs])
    F = np.vstack([Fb, Fs_open + len(Vb)])
    # The field's surface: the same box (its own copy) and a closed sphere.
    VF = np.vstack([Vb + 0.01, Vs])
    FF = np.vstack([Fb, Fs + len(Vb)])
    V2, F2 = close_open_parts(V, F, VF, FF, pad=0.05)
    assert topology.is_watertight(F2) and topology.connected_components(F2) == 2
    # The detailed box stays (not the field's shifted copy), the sphere is the field's.
    assert np.any(np.all(np.isclose(V2, Vb[0]), axis=1))
    assert not np.any(np.all(np.isclose(V2, Vb[0] + 0.01), axis=1))
    assert len(F2) == len(Fb) + len(Fs)


def test_witness_summary():
    assert witness_summary(0.9704) == "detail 97 %, field 3 %"
    assert witness_summary(1.0) == "detail 100 %, field 0 %"
    assert witness_summary(None) is None
