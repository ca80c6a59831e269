"""The .lipsdf file: exact round trip, and anything damaged is refused without running code."""

import io
import zipfile

import numpy as np
import pytest
import torch

from lipsdf_blender.core.errors import FieldFileError
from lipsdf_blender.core.fields.field import Field
from lipsdf_blender.core.fields.network import LipschitzMLP


@pytest.fixture
def field():
    torch.manual_seed(0)
    net = LipschitzMLP(3, 8)
    with torch.no_grad():
        net.q.normal_()
    return Field(net, [1.0, 2.0, 3.0], 0.5, [-1, 0, 1], [3, 4, 5], record={"preset": "fast"})


def test_round_trip_gives_identical_values(field, tmp_path):
    path = field.save(tmp_path / "a.lipsdf")
    loaded = Field.load(path)
    P = np.random.default_rng(0).normal(size=(1000, 3)) * 3
    np.testing.assert_array_equal(field.evaluate(P), loaded.evaluate(P))
    assert loaded.record == field.record
    np.testing.assert_array_equal(loaded.center, field.center)
    assert loaded.scale == field.scale
    assert loaded.bounds()[1].tolist() == [3, 4, 5]


def test_truncated_file_is_refused(field, tmp_path):
    path = field.save(tmp_path / "a.lipsdf")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FieldFileError, match="truncated or corrupted"):
        Field.load(path)


def _rewrite_member(path, name, mutate):
    """Rewrite one array of the npz (as an attacker or a broken disk would)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays[name] = mutate(arrays[name])
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_tampered_weights_are_refused(field, tmp_path):
    path = field.save(tmp_path / "a.lipsdf")

    def bump(a):
        a.flat[0] += 1.0
        return a

    _rewrite_member(path, "W", bump)
    with pytest.raises(FieldFileError, match="integrity"):
        Field.load(path)


def test_tampered_metadata_is_refused(field, tmp_path):
    path = field.save(tmp_path / "a.lipsdf")
    _rewrite_member(
        path,
        "meta",
        lambda a: np.frombuffer(
            a.tobytes().replace(b'"scale": 0.5', b'"scale": 5.0'), dtype=np.uint8
        ),
    )
    with pytest.raises(FieldFileError, match="integrity"):
        Field.load(path)


def test_pickled_content_is_never_loaded(tmp_path):
    path = tmp_path / "evil.lipsdf"
    buf = io.BytesIO()
    np.save(buf, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as zf:
        for k in ("W", "b", "q", "w_out", "b_out", "meta", "checksum"):
            zf.writestr(k + ".npy", buf.getvalue())
    with pytest.raises(FieldFileError):
        Field.load(path)


def test_missing_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(FieldFileError, match="not found"):
        Field.load(tmp_path / "nope.lipsdf")
    other = tmp_path / "other.lipsdf"
    other.write_text("v 0 0 0\n")
    with pytest.raises(FieldFileError):
        Field.load(other)
