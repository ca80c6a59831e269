"""Shared fixtures: small trained fields, made once per test session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

from lipsdf_blender.core.inputs import primitives
from lipsdf_blender.core.inputs.geometry import Geometry
from lipsdf_blender.core.training.presets import SampleConfig
from lipsdf_blender.core.training.train import train_field

torch.set_num_threads(2)

# Fuzzing profiles (tests/test_fuzz.py). The sample runs by default: few examples, derandomized
# so CI sees the same inputs every time, no example database. The slow run (`make test-slow`)
# tries many more, from a fresh random seed each time (`--hypothesis-seed=N` replays one).
# `deadline` is hypothesis' per-example limit; test_fuzz.py adds a hard alarm on top.
_FUZZ_COMMON = dict(
    deadline=5000,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.register_profile("lipsdf-fuzz-sample", max_examples=40, derandomize=True, **_FUZZ_COMMON)
settings.register_profile("lipsdf-fuzz-slow", max_examples=1500, **_FUZZ_COMMON)

#: A network and schedule small enough for the default test run on 2 CPU cores.
TINY = dict(
    depth=6,
    width=32,
    steps=800,
    batch_size=1024,
    lr=1.5e-2,
    samples=SampleConfig(n_uniform=20_000, n_surface=40_000),
)

SPHERE_RADIUS = 0.8
#: Worker processes of the tests: one thread (on a shared 2-core machine two threads per
#: process slow tiny networks down several times over).
WORKER_ENV = {"LIPSDF_WORKER_THREADS": "1"}


@pytest.fixture(scope="session")
def sphere_field():
    V, F = primitives.icosphere(SPHERE_RADIUS, 4)
    # A little wider and longer than TINY: the remesh must land within 1 % of the radius.
    kw = dict(TINY, width=48, steps=1500)
    return train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=0, **kw)


@pytest.fixture(scope="session")
def box_field():
    V, F = primitives.box_mesh(half_size=(0.6, 0.4, 0.3))
    return train_field(Geometry.mesh(V, F), "fast", device="cpu", seed=1, **TINY)


@pytest.fixture(scope="module")
def client():
    """A worker process for the tests of one module."""
    from lipsdf_blender.worker.client import WorkerClient

    c = WorkerClient(env=WORKER_ENV)
    c.start()
    yield c
    c.shutdown()


def random_points(n: int, half: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-half, half, size=(n, 3))


def write_scan_ply(path, P, N, fmt: str = "binary_little_endian", seed: int = 0) -> None:
    """A PLY point cloud as a scanner writes one: ``x y z nx ny nz``, uchar colours and alpha,
    a float quality and an empty face element (colours and quality are not ours to read)."""
    n = len(P)
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (n, 4)).astype(np.uint8)
    quality = rng.uniform(0, 1, n).astype(np.float32)
    names = ("x", "y", "z", "nx", "ny", "nz")
    head = [
        "ply",
        f"format {fmt} 1.0",
        "comment made by a scanner",
        f"element vertex {n}",
        *(f"property float {c}" for c in names),
        *(f"property uchar {c}" for c in ("red", "green", "blue", "alpha")),
        "property float quality",
        "element face 0",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    if fmt == "ascii":
        rows = [
            " ".join(f"{v:.9g}" for v in (*P[i], *N[i]))
            + " "
            + " ".join(str(int(c)) for c in colours[i])
            + f" {quality[i]:.6g}"
            for i in range(n)
        ]
        body = ("\n".join(rows) + "\n").encode()
    else:
        bo = "<" if fmt == "binary_little_endian" else ">"
        dt = np.dtype(
            [(c, bo + "f4") for c in names]
            + [(c, "u1") for c in ("red", "green", "blue", "alpha")]
            + [("quality", bo + "f4")]
        )
        rec = np.empty(n, dt)
        for j, c in enumerate(names):
            rec[c] = (P if j < 3 else N)[:, j % 3]
        for j, c in enumerate(("red", "green", "blue", "alpha")):
            rec[c] = colours[:, j]
        rec["quality"] = quality
        body = rec.tobytes()
    with open(path, "wb") as fh:
        fh.write(("\n".join(head) + "\n").encode() + body)


def sphere_cloud(n: int, radius: float = 0.7, axes=(1.0, 1.0, 1.0)):
    """Evenly spread points on an ellipsoid ``radius * axes`` and their outward unit normals."""
    i = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * i / n), np.pi * (1 + 5**0.5) * i
    U = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)
    a = radius * np.asarray(axes, dtype=np.float64)
    N = U / a
    return U * a, N / np.linalg.norm(N, axis=1, keepdims=True)


def _free_port(lo: int = 9000, hi: int = 9990) -> int:
    """A free TCP port below Ray's default worker port range (10002-19999)."""
    import random
    import socket

    rng = random.Random()
    for _ in range(200):
        port = rng.randint(lo, hi)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for the Ray head")


#: Environment of every Ray process the tests start or connect from: no token auth (a
#: throw-away local cluster), no usage stats, a short Ray Client reconnect grace period.
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_CLIENT_RECONNECT_GRACE_PERIOD": "3",
}


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """A local Ray head with 2 CPUs, started for the session and stopped after it.

    Yields a dict: ``address`` (``127.0.0.1:<gcs port>``, for a driver on this node),
    ``client`` (``ray://127.0.0.1:<port>``, Ray Client), ``env`` (the variables a process
    needs to reach it; already set in this process), ``logs`` (its log folder) and
    ``stop()`` / ``start()`` to take it down and up again (for lost-connection tests;
    addresses stay the same).
    Skipped when Ray is not installed.
    """
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ray")
    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        ray_bin = shutil.which("ray")
    temp = tmp_path_factory.mktemp("ray")
    # Every port of its own, so a second local cluster (another test session) never meets it.
    ports = {}
    for name in ("port", "ray-client-server-port", "dashboard-port", "dashboard-agent-grpc-port",
                 "dashboard-agent-listen-port", "metrics-export-port", "runtime-env-agent-port",
                 "node-manager-port", "object-manager-port"):  # fmt: skip
        ports[name] = _free_port()
        while list(ports.values()).count(ports[name]) > 1:
            ports[name] = _free_port()
    gcs, client_port = ports["port"], ports["ray-client-server-port"]
    # Worker ports, apart from other sessions' too: 24000-31999 stays below the kernel's
    # ephemeral ports (32768 up, where _free_port's come from) and clear of 23000-23999, where
    # Ray Client starts one server per connected client: a worker started on that server's
    # port in the moment between Ray's check and its bind kills the client's connection.
    lo = 24000 + 1000 * (os.getpid() % 8)
    env = dict(os.environ, **RAY_ENV)
    os.environ.update(RAY_ENV)

    def start():
        subprocess.run(
            [str(ray_bin), "start", "--head", "--node-ip-address", "127.0.0.1",
             *[a for k, v in ports.items() for a in (f"--{k}", str(v))],
             "--min-worker-port", str(lo), "--max-worker-port", str(lo + 999),
             "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false",
             "--disable-usage-stats", "--temp-dir", str(temp)],
            env=env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def stop():
        # Only this head's processes (their command lines name its temp folder) and their
        # children (the workers): `ray stop` would stop every Ray cluster on the machine.
        # The Ray Client server names only its port: left running, it would keep the port
        # and answer for a dead head after start().
        import psutil

        proxy = ("ray.util.client.server", f"--port={client_port}")
        mine = []
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or [])
            if str(temp) in cmd or all(part in cmd for part in proxy):
                try:
                    mine += [p, *p.children(recursive=True)]
                except psutil.NoSuchProcess:
                    pass
        for p in mine:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(mine, timeout=10)

    start()
    try:
        yield {
            "address": f"127.0.0.1:{gcs}",
            "client": f"ray://127.0.0.1:{client_port}",
            "env": dict(RAY_ENV),
            "start": start,
            "stop": stop,
            "logs": temp / "session_latest" / "logs",
        }
    finally:
        stop()


def run_bpy_scenario(script: str, out: Path, tiny: dict, timeout: float = 600, **env) -> tuple:
    """Run a ``bpy`` scenario in a fresh process with the add-on from this checkout
    (``PYTHONPATH``) and a real worker on one thread; ``LIPSDF_TEST_TINY`` is ``tiny`` (the
    preset overrides), ``LIPSDF_TEST_OUT`` is ``out``, ``env`` adds variables. The scenario
    prints ``FACTS <json>`` last; returns those facts and the process's stdout."""
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        PYTHONPATH=str(root),
        OMP_NUM_THREADS="1",
        LIPSDF_WORKER_PYTHON=sys.executable,
        LIPSDF_WORKER_THREADS="1",
        LIPSDF_TEST_TINY=json.dumps(tiny),
        LIPSDF_TEST_OUT=str(out),
        BLENDER_USER_RESOURCES=str(out / "user"),
        **env,
    )
    path = out / "scenario.py"
    path.write_text(textwrap.dedent(script))
    proc = subprocess.run(
        [sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=timeout
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("FACTS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:] + proc.stdout[-3000:]
    return json.loads(lines[-1][len("FACTS ") :]), proc.stdout
