"""The real-scan benchmark's pieces on known answers: reports.scan_report, the averages of
bench_clouds.py, and scan_data.py's message for a missing file.

Numpy, scipy and libigl only: no scan data, no peers, no network.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from lipsdf_blender.core.inputs.primitives import icosphere
from lipsdf_blender.core.surfaces.metrics import sample_surface

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_clouds  # noqa: E402
import reports  # noqa: E402
import scan_data  # noqa: E402


def _half_scan(n: int = 20000):
    """A one-view 'scan': points on the upper half of the unit sphere."""
    V, F = icosphere(1.0, 5)
    P, _ = sample_surface(V, F, 2 * n, seed=1)
    return V, F, P[P[:, 2] > 0][:n]


def test_a_result_on_the_scan_is_at_zero_and_sees_half():
    V, F, P = _half_scan()
    r = reports.scan_report(P, V, F, diag=2.0, V_ref=V, F_ref=F, seen=0.01, n=20000)
    assert r["scan_mean_percent"] < 1e-6
    assert r["seen_chamfer_percent"] < 1e-6 and r["seen_normal_deg"] < 1.0
    assert 45 < r["seen_percent"] < 55  # the upper half, and a rim of 1 % of the diagonal
    assert r["iou"] > 0.99 and r["watertight"] and r["components"] == 1


def test_a_larger_result_is_off_by_the_offset_where_it_was_seen():
    V, F, P = _half_scan()
    Vo, Fo = icosphere(1.02, 5)
    r = reports.scan_report(P, Vo, Fo, diag=2.0, V_ref=V, F_ref=F, n=20000)
    assert r["scan_mean_percent"] == pytest.approx(1.0, abs=0.05)  # 0.02 of a diagonal of 2
    assert r["seen_chamfer_percent"] == pytest.approx(1.0, abs=0.05)


def test_without_a_reference_only_the_scan_and_the_topology():
    V, F, P = _half_scan(2000)
    r = reports.scan_report(P, V, F, diag=2.0)
    assert "seen_chamfer_percent" not in r and "iou" not in r
    assert r["watertight"] and r["faces"] == len(F)


def test_averages_take_the_plain_peer_rows_on_shapes_all_finished():
    def row(shape, tool, chamfer, iou):
        return {
            "shape": shape,
            "cloud": "clean",
            "tool": tool,
            "chamfer_percent": chamfer,
            "iou": iou,
            "normal_error_mean_deg": 1.0,
            "watertight": True,
            "components": 1,
        }

    rows = [
        row("a", "LipSDF fast", 0.1, 0.9),
        row("a", "Open3D Poisson 9", 0.3, 0.7),
        row("a", "Open3D Poisson 9, trimmed", 9.0, 0.0),  # not averaged
        row("a", "MeshLab Poisson 9", 0.2, 0.8),
        row("b", "LipSDF fast", 0.5, 0.5),  # no peer finished b: left out
    ]
    out = {r["tool"]: r for r in bench_clouds.averages(rows, ["clean"])}
    assert out["LipSDF fast"]["shapes"] == 1 and out["LipSDF fast"]["iou"] == 0.9
    assert out["Open3D Poisson 9"]["chamfer_percent"] == 0.3
    assert out["MeshLab Poisson 9"]["closed_one_part"] == "1/1"
    # a run without MeshLab (--peers o3d-poisson) averages the tools that ran
    rows = [r for r in rows if not r["tool"].startswith("MeshLab")]
    rows.append(row("b", "Open3D Poisson 9", 0.7, 0.3))
    out = {r["tool"]: r for r in bench_clouds.averages(rows, ["clean"])}
    assert set(out) == {"LipSDF fast", "Open3D Poisson 9"}
    assert out["LipSDF fast"]["shapes"] == 2 and out["LipSDF fast"]["iou"] == 0.7
    assert out["Open3D Poisson 9"]["chamfer_percent"] == 0.5


def test_a_missing_file_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("LIPSDF_BENCH_DATA", str(tmp_path))
    with pytest.raises(scan_data.MissingData, match="scan_data.py --fetch"):
        scan_data.data_path("milk.pcd")
    (tmp_path / "milk.pcd").write_bytes(b"not the pinned file")
    assert scan_data.data_path("milk.pcd") == tmp_path / "milk.pcd"
    assert np.all([len(s.sha256) == 64 for s in scan_data.FILES.values()])
