"""Checking the worker's interpreter and making its private environment (no downloads)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from lipsdf_blender.worker.environment import SetupError, check_interpreter, setup_environment


def test_check_accepts_this_interpreter():
    v = check_interpreter(sys.executable)
    assert v["ok"], v["message"]
    assert v["missing"] == [] and v["message"].startswith("OK")
    assert set(v["versions"]) == {"torch", "numpy", "libigl", "scipy"}
    assert v["devices"][-1]["type"] == "cpu"
    if not any(d["type"] == "cuda" for d in v["devices"]):
        assert "CPU only" in v["message"]


def _python_without_torch(tmp_path):
    for candidate in ("/usr/bin/python3", shutil.which("python3")):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run(
                [candidate, "-c", "import torch"], capture_output=True, env={}, timeout=60
            )
            if probe.returncode != 0:
                return candidate
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    return str(tmp_path / "v" / "bin" / "python")


def test_check_names_what_is_missing(tmp_path):
    python = _python_without_torch(tmp_path)
    v = check_interpreter(python)
    assert not v["ok"]
    assert "torch" in v["missing"]
    assert "cannot import" in v["message"] and "torch" in v["message"]
    assert "pip install" in v["message"]


def test_check_of_a_missing_file():
    v = check_interpreter("/no/such/python")
    assert not v["ok"] and "cannot run" in v["message"]


def test_setup_fails_clearly_when_offline(tmp_path, monkeypatch):
    # No package source at all: no config file, no local wheels, an index nobody answers on.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/")
    lines = []
    with pytest.raises(SetupError) as err:
        setup_environment(
            tmp_path / "env",
            progress=lines.append,
            pip_args=["--retries", "0", "--timeout", "2", "--no-cache-dir"],
        )
    assert "offline" in str(err.value)
    assert any("installing" in line for line in lines)
    assert (tmp_path / "env").is_dir()
