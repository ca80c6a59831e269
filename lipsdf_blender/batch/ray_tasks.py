"""Batches on Ray: one task per shape, the same :func:`.shape.run_shape` as a local worker.

- Resources: one GPU a task (and its share of the node's CPUs) where the cluster has GPUs,
  else ``--cpus-per-task`` CPUs (:func:`worker.cluster.task_resources`); torch in the task
  uses that many threads.
- Files: by default the input's bytes travel to the task through Ray's object store and the
  outputs come back as bytes, written here (no shared file system needed, e.g. through Ray
  Client). ``--shared-storage``: the task reads the input and writes the outputs itself at
  the same paths (every node sees the same file system, e.g. NFS or a bucket mount), and only
  the row comes back.
- Retries: a task whose worker process or node is lost is retried by Ray (``max_retries``);
  a shape that fails, or is still lost after that, is recorded and tried once more by the
  batch, as locally.
- At most ``2 x`` the cluster's task slots are in flight, so a batch of 10,000 inputs never
  holds them all in the object store.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from ..worker import cluster
from ..worker.protocol import save_bytes
from .shape import Settings, write_result
from .tasks import Task, crashed_row, settle

#: Ray's own retries of a task whose process or node was lost.
RAY_RETRIES = 1


def _shape_task(name: str, data: bytes | None, path: str, folder: str, settings: dict, digest):
    """The body of a Ray task: one shape; returns ``(row, {file name: bytes})``."""
    from .shape import run_shape

    s = Settings.from_dict(settings)
    if data is None:  # shared storage: paths are the same here
        return run_shape(path, folder, s, digest), {}
    with tempfile.TemporaryDirectory(prefix="lipsdf-batch-") as tmp:
        src = Path(tmp) / "in" / name
        src.parent.mkdir()
        src.write_bytes(data)
        out = Path(tmp) / "out" / Path(folder).name
        row = run_shape(src, out, s, digest)
        files = {}
        if row["status"] == "ok":
            for f in row["outputs"]:
                files[f] = (out / f).read_bytes()
        return row, files


def _deliver(task: Task, row: dict, files: dict) -> dict:
    """Write what a task sent back into the task's folder; ``result.json`` last."""
    if row.get("status") != "ok" or not files:
        return row
    task.folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        save_bytes(task.folder / name, data)
    row = dict(row, input=str(task.path))
    write_result(task.folder, row)
    return row


def run_ray(tasks, queue, settings: Settings, args, bar, table) -> dict:
    """Run the queued tasks on the Ray cluster at ``args.ray``; returns the runner's details
    for the table (address, resources a task, nodes)."""
    ray = cluster.ray_module()
    info = cluster.connect(args.ray, start_local=True)
    res = cluster.task_resources(info, args.cpus_per_task)
    threads = settings.threads or res["num_cpus"]
    run_settings = Settings.from_dict(dict(settings.to_dict(), threads=threads))
    payload = run_settings.to_dict()
    remote = ray.remote(_shape_task).options(
        name="lipsdf_shape", max_retries=RAY_RETRIES, retry_exceptions=False, **res
    )
    slots = max(1, int(info["gpus"] if res.get("num_gpus") else info["cpus"] // res["num_cpus"]))
    in_flight: dict = {}

    def submit(task: Task):
        data = None if args.shared_storage else task.path.read_bytes()
        ref = remote.remote(
            task.path.name,
            data,
            str(task.path.resolve()),
            str(task.folder.resolve()),
            payload,
            task.digest,
        )
        in_flight[ref] = (task, time.monotonic())
        bar.phase(task.index, f"{task.path.name}: on Ray")

    while queue or in_flight:
        while queue and len(in_flight) < 2 * slots:
            submit(queue.pop(0))
        # every task that finishes within half a second, in one call
        ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0.5)
        for ref in ready:
            task, started = in_flight.pop(ref)
            try:
                row, files = ray.get(ref)
                row = _deliver(task, row, files)
            except ray.exceptions.RayError as exc:
                why = (
                    f"the Ray task was lost ({type(exc).__name__}) after "
                    f"{time.monotonic() - started:.1f} s and {RAY_RETRIES} retry by Ray: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                )
                row = crashed_row(task, settings, why)
            settle(task, row, queue, bar, table, tasks)
    return {"cluster": info, "task_resources": res, "shared_storage": bool(args.shared_storage)}
