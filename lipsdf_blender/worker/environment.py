"""The worker's Python: check a candidate interpreter, or make a private environment for it.

No torch, no bpy here: both functions run the candidate interpreter as a subprocess.

The manual alternative to :func:`setup_environment`: point the add-on at any Python 3.10+
that can import torch, numpy, libigl and scipy, for example a conda environment with CUDA::

    conda create -n lipsdf python=3.11 && conda activate lipsdf
    pip install torch numpy libigl scipy      # or torch from https://pytorch.org for your CUDA
    which python                              # paste this path into the add-on's preferences

:func:`check_interpreter` says whether it will do and which devices it sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core.errors import LipSDFError

#: What the worker needs: (import name, pip distribution).
REQUIRED = (("torch", "torch"), ("numpy", "numpy"), ("igl", "libigl"), ("scipy", "scipy"))
#: Exact versions the private environment installs (the ones the tests run with), for a
#: Python before 3.13 (Blender 4.2 to 5.0 run 3.11); :func:`pinned` gives the set for another.
PINNED = (
    "torch==2.13.0",
    "numpy==1.26.4",
    "libigl==2.6.3",
    "scipy==1.17.1",
    "fast-simplification==0.2.0",
    "psutil==7.2.2",
)
#: Pins that differ by the venv's Python: ((major, minor) from which on, requirement), the
#: newest first; the first entry not above the venv's Python replaces that package's pin in
#: :data:`PINNED`. numpy 1.26.4 has no wheel for Python 3.13, which Blender 5.1 and later run
#: (Set Up Worker makes the venv with Blender's own Python); 2.3.5 is the numpy Blender 5.2
#: and 5.3's test venvs run with. tests/test_worker_environment.py resolves each whole set.
PINNED_BY_PYTHON = {"numpy": (((3, 13), "numpy==2.3.5"),)}
#: Added to :data:`PINNED` when the worker forwards its jobs to a Ray cluster
#: (requirements-ray.txt; the cluster must run the same Ray version).
RAY_PINNED = ("ray[client]==2.60.0", "grpcio==1.85.3")
MIN_PYTHON = (3, 10)


def _name(requirement: str) -> str:
    return requirement.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()


def pinned(python: Sequence[int] | None = None, ray: bool = False) -> tuple[str, ...]:
    """The exact requirements of the private environment for a venv of Python ``python``.

    Parameters
    ----------
    python : (major, minor), optional
        The venv's Python version; default: this Python's (Set Up Worker makes the venv with
        Blender's own Python).
    ray : bool
        Add :data:`RAY_PINNED` (a worker that forwards its jobs to a Ray cluster).

    Example: ``pinned((3, 13))`` holds ``numpy==2.3.5``, ``pinned((3, 11))`` ``numpy==1.26.4``.
    """
    version = tuple(python or sys.version_info[:2])[:2]
    out = []
    for requirement in PINNED:
        for since, pin in PINNED_BY_PYTHON.get(_name(requirement), ()):
            if version >= since:
                requirement = pin
                break
        out.append(requirement)
    return (*out, *(RAY_PINNED if ray else ()))


_MARK = "LIPSDF-CHECK "

# Runs in the candidate interpreter: kept free of newer syntax so an old Python still answers.
_PROBE = r"""
import json, platform, sys
out = {"python": platform.python_version(), "executable": sys.executable, "versions": {},
       "errors": {}, "devices": [], "cuda": None}
for mod, dist in __REQUIRED__:
    try:
        m = __import__(mod)
        v = getattr(m, "__version__", None)
        if v is None:
            try:
                from importlib.metadata import version
                v = version(dist)
            except Exception:
                v = "unknown"
        out["versions"][dist] = str(v)
    except Exception as e:
        out["errors"][dist] = "%s: %s" % (type(e).__name__, e)
if "torch" in out["versions"]:
    import torch
    out["cuda"] = torch.version.cuda
    try:
        for i in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
            p = torch.cuda.get_device_properties(i)
            out["devices"].append({"type": "cuda", "name": p.name,
                                   "memory_gib": round(p.total_memory / 2**30, 1)})
    except Exception as e:
        out["errors"]["cuda"] = "%s: %s" % (type(e).__name__, e)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out["devices"].append({"type": "mps", "name": "Apple MPS"})
    out["devices"].append({"type": "cpu", "name": "CPU (%d threads)" % torch.get_num_threads()})
sys.stdout.write(__MARK__ + json.dumps(out) + "\n")
""".replace("__REQUIRED__", repr(REQUIRED)).replace("__MARK__", repr(_MARK))


class SetupError(LipSDFError):
    """Making the worker's private environment failed; the message says why and what to do."""


def _pip_hint(python: str, missing: Sequence[str]) -> str:
    return f'"{python}" -m pip install {" ".join(missing)}'


def check_interpreter(python: str, timeout: float = 120.0) -> dict:
    """Can ``python`` run the worker? Runs it once to import torch, numpy, libigl and scipy.

    Returns
    -------
    dict
        ``ok`` (bool), ``message`` (one paragraph for the user), ``python`` (version or
        ``None``), ``executable``, ``versions`` (distribution -> version), ``missing``
        (distributions it lacks), ``errors`` (distribution -> import error), ``cuda`` (the
        torch build's CUDA version or ``None``) and ``devices`` (``type``, ``name``, and
        ``memory_gib`` for GPUs; the CPU is always last).
    """
    verdict = {
        "ok": False,
        "executable": str(python),
        "python": None,
        "versions": {},
        "missing": [],
        "errors": {},
        "cuda": None,
        "devices": [],
    }
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    try:
        proc = subprocess.run(
            [str(python), "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, ValueError) as exc:
        verdict["message"] = f"cannot run {python!r}: {exc}. Choose a Python 3.10+ executable."
        return verdict
    except subprocess.TimeoutExpired:
        verdict["message"] = f"{python} did not answer within {timeout:.0f} s (importing torch)."
        return verdict
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
    if not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        verdict["message"] = (
            f"{python} is not a usable Python (exit code {proc.returncode}): {tail}. "
            "Choose a Python 3.10+ executable."
        )
        return verdict
    verdict.update(json.loads(lines[-1][len(_MARK) :]))
    verdict["missing"] = [dist for _, dist in REQUIRED if dist not in verdict["versions"]]
    version = tuple(int(x) for x in verdict["python"].split(".")[:2])
    if version < MIN_PYTHON:
        verdict["message"] = (
            f"{python} is Python {verdict['python']}; the worker needs Python "
            f"{'.'.join(map(str, MIN_PYTHON))} or newer."
        )
        return verdict
    if verdict["missing"]:
        why = "; ".join(f"{d}: {verdict['errors'][d]}" for d in verdict["missing"])
        verdict["message"] = (
            f"Python {verdict['python']} at {python} cannot import {', '.join(verdict['missing'])} "
            f"({why}). Install them with {_pip_hint(python, verdict['missing'])}, choose another "
            "Python, or let the add-on set up its own environment."
        )
        return verdict
    verdict["ok"] = True
    v = verdict["versions"]
    gpus = [d["name"] for d in verdict["devices"] if d["type"] != "cpu"]
    if gpus:
        where = "GPU: " + ", ".join(gpus)
    elif verdict["cuda"] is None:
        where = "CPU only: this torch build has no CUDA support"
    else:
        where = f"CPU only: torch has CUDA {verdict['cuda']} but finds no GPU or driver"
    verdict["message"] = (
        f"OK: Python {verdict['python']} with torch {v['torch']}, numpy {v['numpy']}, "
        f"libigl {v['libigl']}, scipy {v['scipy']} ({where})."
    )
    return verdict


def venv_python(folder) -> Path:
    """The interpreter inside a venv folder."""
    folder = Path(folder)
    if os.name == "nt":
        return folder / "Scripts" / "python.exe"
    return folder / "bin" / "python"


_OFFLINE_SIGNS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Connection refused",
    "No matching distribution found",
    "Could not fetch URL",
    "ConnectionError",
    "Max retries exceeded",
)


def setup_environment(
    folder,
    python: str | None = None,
    progress: Callable[[str], None] | None = None,
    packages: Sequence[str] | None = None,
    pip_args: Sequence[str] = (),
    timeout: float = 3600.0,
) -> dict:
    """Make a private environment for the worker: a venv in ``folder``, then pip installs.

    Only call this when the user asks: it downloads about 1 GB (torch).

    Parameters
    ----------
    folder : path
        Where the venv goes (created; an existing venv there is reused).
    python : str, optional
        The Python 3.10+ that makes the venv (default: this one).
    progress : callable(str), optional
        Receives every output line of venv and pip as it comes.
    packages : sequence of str, optional
        pip requirement strings; default: :func:`pinned` for the venv's Python.
    pip_args : sequence of str
        Extra pip arguments, e.g. ``["--index-url", "https://download.pytorch.org/whl/cu128"]``.

    Returns
    -------
    dict
        :func:`check_interpreter`'s verdict on the new environment.

    Raises
    ------
    SetupError
        The venv could not be made, or pip failed (offline, no wheel for this platform, ...).
    """
    python = python or sys.executable
    folder = Path(folder)
    say = progress or (lambda line: None)
    target = venv_python(folder)
    if not target.exists():
        say(f"making a virtual environment in {folder} with {python}")
        _stream([str(python), "-m", "venv", str(folder)], say, timeout, "making the venv")
    if packages is None:
        packages = pinned(_version_of(target, timeout))
    cmd = [str(target), "-m", "pip", "install", "--progress-bar", "off", *pip_args, *packages]
    say("installing " + " ".join(packages))
    _stream(cmd, say, timeout, "installing packages")
    verdict = check_interpreter(str(target))
    say(verdict["message"])
    if not verdict["ok"]:
        raise SetupError(f"the new environment in {folder} does not work: {verdict['message']}")
    return verdict


def _version_of(python, timeout: float) -> tuple[int, int]:
    """(major, minor) of the interpreter ``python``."""
    try:
        out = subprocess.run(
            [str(python), "-c", "import sys; print(*sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        major, minor = out.stdout.split()
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise SetupError(f"cannot run the new environment's Python {python} ({exc})") from None


def _stream(cmd: list[str], say, timeout: float, what: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH")}
    env["PYTHONUNBUFFERED"] = "1"
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            bufsize=1,
        )
    except OSError as exc:
        raise SetupError(f"{what} failed: cannot run {cmd[0]!r} ({exc})") from None
    lines: list[str] = []
    for line in proc.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        say(line)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise SetupError(f"{what} took longer than {timeout:.0f} s and was stopped") from None
    if code == 0:
        return
    text = "\n".join(lines)
    tail = "\n".join(lines[-8:])
    if any(sign in text for sign in _OFFLINE_SIGNS):
        raise SetupError(
            f"{what} failed: the package index could not be reached or has no matching "
            "package (are you offline?). Connect to the internet and try again, or point the "
            "add-on at a Python that already has torch, numpy, libigl and scipy.\n" + tail
        )
    if "No module named venv" in text or "ensurepip" in text:
        raise SetupError(
            f"{what} failed: {cmd[0]} cannot make virtual environments (no venv/ensurepip); "
            "install python3-venv or choose another Python.\n" + tail
        )
    raise SetupError(f"{what} failed (exit code {code}):\n{tail}")
