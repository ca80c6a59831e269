"""The worker's pinned set resolves, whole, for each Python that Set Up Worker meets.

*Set Up Worker* makes the worker's venv with Blender's own Python: 3.11 in Blender 4.2 to 5.0,
3.13 from 5.1 on. Each test asks pip's resolver, against the package index this machine uses,
for the exact set :func:`environment.pinned` gives that Python (Ray included), as binary wheels
for CPython on manylinux x86-64: no download of the wheels themselves, no install. A pin with
no wheel for that Python (numpy 1.26.4 on 3.13 was one) fails here, not in a user's Blender.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lipsdf_blender.worker import environment

#: manylinux_2_5 ... manylinux_2_28 and the legacy aliases: pip does not widen a given
#: ``--platform`` to older glibc tags by itself (numpy 1.26.4 is manylinux2014 only, numpy
#: 2.3.5 and torch 2.13.0 are manylinux_2_28).
PLATFORMS = [f"manylinux_2_{g}_x86_64" for g in range(5, 29)] + [
    "manylinux1_x86_64",
    "manylinux2010_x86_64",
    "manylinux2014_x86_64",
]


def _resolve(python: tuple[int, int], requirements, tmp_path) -> list[dict]:
    report = tmp_path / f"report-{python[0]}.{python[1]}.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    cmd += ["--only-binary=:all:", "--implementation", "cp", "--python-version"]
    cmd += [f"{python[0]}.{python[1]}", "--report", str(report)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    proc = subprocess.run(
        [*cmd, *requirements], capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL
    )
    errors = [ln for ln in proc.stderr.splitlines() if "Location" not in ln]
    assert proc.returncode == 0, "\n".join(errors[-20:])
    return json.loads(report.read_text())["install"]


@pytest.mark.parametrize("python", [(3, 11), (3, 13)], ids=["cp311", "cp313"])
def test_the_whole_pinned_set_resolves_for_this_python(python, tmp_path):
    wanted = environment.pinned(python, ray=True)
    installs = _resolve(python, wanted, tmp_path)
    got = {item["metadata"]["name"].lower().replace("_", "-"): item for item in installs}
    tag = f"cp{python[0]}{python[1]}"
    for requirement in wanted:
        name, version = requirement.split("==")
        name = name.split("[")[0].lower()
        assert name in got, (requirement, sorted(got))
        # "2.13.0+cpu" is the same release as the pin (a local build label)
        assert got[name]["metadata"]["version"].split("+")[0] == version, requirement
        wheel = got[name]["download_info"]["url"].rsplit("/", 1)[-1]
        assert wheel.endswith(".whl"), wheel
        # a compiled wheel is for this Python (or the stable ABI), never another's
        py_tag, abi_tag = wheel[:-4].split("-")[-3:-1]
        assert tag in py_tag.split(".") or abi_tag in ("none", "abi3"), (requirement, wheel)
    assert {"torch", "numpy", "libigl", "scipy"} <= set(got)


def test_pins_differ_by_python_only_where_a_package_needs_it():
    old, new = environment.pinned((3, 11)), environment.pinned((3, 13))
    assert old == environment.PINNED  # 4.2 to 5.0 (Python 3.11) keep what the tests run with
    assert [p for p in new if p not in old] == ["numpy==2.3.5"]
    assert [p for p in old if p not in new] == ["numpy==1.26.4"]
    assert environment.pinned((3, 14)) == new  # a newer Python keeps the newest pins
    assert environment.pinned((3, 13), ray=True)[-2:] == environment.RAY_PINNED
    # Set Up Worker's default: the pins of the Python that runs it (Blender's own)
    assert environment.pinned() == environment.pinned(sys.version_info[:2])


def test_setup_environment_installs_the_pins_of_the_new_venvs_python(tmp_path, monkeypatch):
    # The venv is made by a Python 3.13 stand-in; pip is replaced by a recorder (no network).
    seen = []
    monkeypatch.setattr(environment, "_version_of", lambda python, timeout: (3, 13))
    monkeypatch.setattr(environment, "_stream", lambda cmd, *a: seen.append(cmd))
    monkeypatch.setattr(
        environment, "check_interpreter", lambda python: {"ok": True, "message": "OK"}
    )
    (tmp_path / "env" / "bin").mkdir(parents=True)
    (tmp_path / "env" / "bin" / "python").touch()
    environment.setup_environment(tmp_path / "env")
    assert seen[-1][-len(environment.PINNED) :] == list(environment.pinned((3, 13)))
    assert "numpy==2.3.5" in seen[-1]
