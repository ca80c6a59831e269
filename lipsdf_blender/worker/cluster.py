"""Connecting to a Ray cluster: the one place that imports Ray (lazily).

Ray is optional. It is needed only by ``python -m lipsdf_blender batch --ray ...`` and by a
worker whose jobs are forwarded to a cluster (``LIPSDF_WORKER_RAY``); Blender's own process
never imports it. Both call :func:`connect`, which ships this package to the cluster
(``runtime_env`` ``py_modules``), so the cluster's nodes need only the worker's dependencies
(torch, numpy, libigl) and the same Python minor version and Ray version as this side.

Addresses:

- ``ray://host:10001``: Ray Client, for a machine outside the cluster (an artist's laptop and
  a GPU server: start the server with ``ray start --head --ray-client-server-port 10001``);
- ``host:6379``: join as a driver, for a machine that is a node of the cluster;
- ``auto``: the cluster this machine belongs to, else a new local one (batches only).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
from pathlib import Path

from ..core.errors import LipSDFError

log = logging.getLogger("lipsdf.cluster")

#: The package folder, shipped to the cluster's workers.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
#: Seconds to wait for a TCP connection when checking that something listens at an address.
PROBE = 5.0
#: CPUs a GPU task asks for at most (its host-side phases use them).
GPU_TASK_CPUS = 8
#: Connections tried when the cluster's Ray Client server cannot start this client's own
#: server (seen on heads that have just started, and with a port taken in the meantime), and
#: the seconds between them.
INIT_TRIES = 3
INIT_RETRY_PAUSE = 2.0
#: What to tell a user whose Python has no Ray (requirements-ray.txt pins the same).
INSTALL_HINT = "pip install 'ray[client]==2.60.0' (see requirements-ray.txt)"


class ClusterError(LipSDFError):
    """Ray is missing, the cluster cannot be reached, or it was lost."""


def ray_module():
    """``import ray``, or a :class:`ClusterError` that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ClusterError(f"Ray is not installed in this Python ({exc}); {INSTALL_HINT}") from None


def probe(address: str) -> None:
    """Fail at once when nothing listens at ``host:port`` (Ray Client would retry for 30 s,
    a driver for longer)."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        if address == "auto":
            return
        raise ClusterError(
            f"{address!r} is not a cluster address: use ray://host:10001, host:6379 or auto"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE).close()
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise ClusterError(f"nothing answers at {host}:{port} ({why})") from None


def runtime_env() -> dict:
    """What every task and actor gets: this package, without caches."""
    return {"py_modules": [str(PACKAGE_DIR)], "excludes": ["__pycache__", "*.pyc"]}


def connect(address: str, *, start_local: bool = False, num_cpus: int | None = None) -> dict:
    """Connect this process to the Ray cluster at ``address`` (once; later calls reuse it).

    Parameters
    ----------
    address : str
        ``ray://host:port``, ``host:port`` or ``auto`` (see the module's docstring).
    start_local : bool
        With ``auto`` and no cluster running: start a local one (``num_cpus`` CPUs, default
        all) instead of failing.

    Returns
    -------
    dict
        ``address``, ``cpus``, ``gpus`` (the cluster's totals) and ``nodes`` (alive nodes).

    Raises
    ------
    ClusterError
        Ray is not installed or the cluster cannot be reached, with the address and why.
    """
    ray = ray_module()
    if not isinstance(address, str) or not address.strip():
        raise ClusterError("a Ray address is needed: ray://host:10001, host:6379 or auto")
    address = address.strip()
    if not ray.is_initialized():
        if address != "auto":
            try:
                probe(address)
            except ClusterError as exc:
                raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from None
        kw = dict(runtime_env=runtime_env(), log_to_driver=False, logging_level=logging.WARNING)
        try:
            _init(ray, address, kw)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            if not (start_local and address == "auto"):
                raise ClusterError(f"cannot reach the Ray cluster at {address}: {exc}") from None
            log.info("no Ray cluster running; starting a local one")
            ray.init(
                num_cpus=num_cpus or os.cpu_count() or 1,
                include_dashboard=False,
                **kw,
            )
    return describe()


def _init(ray, address: str, kw: dict) -> None:
    """``ray.init``, again after a pause when a Ray Client server refuses the start
    (``ConnectionAbortedError``: it could not start this client's own server process)."""
    for attempt in range(1, INIT_TRIES + 1):
        try:
            ray.init(address=address, **kw)
            return
        except ConnectionAbortedError as exc:
            if attempt == INIT_TRIES:
                raise
            log.warning("the Ray Client server at %s refused the start (%s); trying again",
                        address, str(exc).strip().splitlines()[0])  # fmt: skip
            ray.shutdown()
            time.sleep(INIT_RETRY_PAUSE)


def describe() -> dict:
    """The connected cluster's address and resources."""
    ray = ray_module()
    try:
        res = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        ctx = ray.get_runtime_context()
        address = getattr(ctx, "gcs_address", None) or "ray"
    except Exception as exc:  # the client's connection went away
        raise ClusterError(f"the Ray cluster is not reachable any more: {exc}") from None
    return {
        "address": address,
        "cpus": float(res.get("CPU", 0.0)),
        "gpus": float(res.get("GPU", 0.0)),
        "nodes": nodes,
    }


def disconnect() -> None:
    """Leave the cluster (a no-op when not connected or without Ray)."""
    try:
        ray = importlib.import_module("ray")
    except ImportError:
        return
    if ray.is_initialized():
        ray.shutdown()


def task_resources(info: dict, cpus_per_task: int | None = None) -> dict:
    """Resources for one task or actor: a GPU where the cluster has GPUs, else CPUs.

    A GPU task also gets its share of the CPUs (``cpus / gpus``, at most :data:`GPU_TASK_CPUS`;
    or ``cpus_per_task``): labelling, the detailed remesh and offsets run on the host, and
    Ray sets a task's threads (``OMP_NUM_THREADS``) to its CPUs. A CPU task gets
    ``cpus_per_task`` CPUs (default 1).
    """
    gpus, cpus = info.get("gpus", 0), info.get("cpus", 0)
    if gpus >= 1:
        share = cpus_per_task or min(GPU_TASK_CPUS, int(cpus // gpus))
        return {"num_gpus": 1, "num_cpus": max(1, int(share))}
    return {"num_cpus": max(1, int(cpus_per_task or 1))}
