"""Batches: many input files, N local worker processes or Ray tasks, one results table.

``python -m lipsdf_blender batch INPUTS... --out DIR`` comes here (:func:`run_batch`).

- Inputs are files, folders (searched recursively for the formats
  :mod:`core.formats` reads) or glob patterns; nothing under ``DIR`` is ever taken as an input.
- Each shape runs :func:`.shape.run_shape` in a worker process (``--jobs N``: N processes,
  the cores shared out, or one GPU each) or in a Ray task (``--ray``, :mod:`.ray_tasks`).
- A shape that fails, or whose process dies, is recorded and tried once more, after the
  others; the batch goes on either way.
- Resumable: a shape whose folder holds a finished ``result.json`` for the same input hash
  and settings is skipped (``skipped`` true in the table); ``--force`` runs it again.
- The table (``results.csv``, ``results.json`` in ``DIR``) is rewritten every 2 s while shapes
  finish and at the end, so an interrupted batch still has one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from multiprocessing.connection import wait
from pathlib import Path

from ..core.errors import BadInputError
from .shape import Settings, finished
from .tasks import Bar, Table, Task, crashed_row, expand_inputs, make_tasks, settle


# -- local worker processes -------------------------------------------------------------------
def _slot_main(conn, threads: int, gpu: int | None) -> None:
    """A local worker process: runs shapes sent on ``conn`` until it gets ``None``."""
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    os.environ["LIPSDF_FAIR_SHARE"] = "0"
    import torch

    from .shape import run_shape

    torch.set_num_threads(max(1, threads))
    while True:
        msg = conn.recv()
        if msg is None:
            return
        index, path, folder, settings, digest = msg

        def progress(phase, done, total, index=index, last=[0.0]):  # noqa: B006 (one list a shape)
            now = time.monotonic()
            if now - last[0] >= 0.5:
                last[0] = now
                conn.send(("progress", index, phase, done, total))

        row = run_shape(path, folder, Settings.from_dict(settings), digest, progress)
        conn.send(("done", index, row))


class _Slot:
    def __init__(self, ctx, threads: int, gpu: int | None):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_slot_main, args=(child, threads, gpu), daemon=True, name="lipsdf-batch"
        )
        self.proc.start()
        child.close()
        self.task: Task | None = None
        self.started = 0.0

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout)


def local_devices(settings: Settings, jobs: int) -> list[int | None]:
    """The GPU each worker process gets (``None``: the CPU), round robin over CUDA GPUs."""
    if settings.device not in ("auto", "cuda"):
        return [None] * jobs
    import torch

    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [i % n if n else None for i in range(jobs)]


def run_local(tasks, queue, settings: Settings, jobs: int, bar: Bar, table: Table) -> None:
    """Run the queued tasks on ``jobs`` worker processes (spawned: a clean torch in each)."""
    ctx = mp.get_context("spawn")
    gpus = local_devices(settings, jobs)
    threads = settings.threads or max(1, (os.cpu_count() or 1) // jobs)
    slots = [_Slot(ctx, threads, gpus[i]) for i in range(min(jobs, len(queue)) or 1)]
    payload = settings.to_dict()
    try:
        while queue or any(s.task for s in slots):
            for i, s in enumerate(slots):
                if s.task is None and queue:
                    if not s.proc.is_alive():
                        slots[i] = s = _Slot(ctx, threads, gpus[i])
                    t = queue.pop(0)
                    s.task, s.started = t, time.monotonic()
                    s.conn.send((t.index, str(t.path), str(t.folder), payload, t.digest))
                    bar.phase(t.index, f"{t.path.name}: start")
            busy = [s for s in slots if s.task is not None]
            ready = wait([s.conn for s in busy] + [s.proc.sentinel for s in busy], timeout=1.0)
            for s in busy:
                alive = s.proc.sentinel not in ready and s.proc.is_alive()
                # Read what it sent; after its exit, whatever is left in the pipe, then EOF.
                while s.task is not None and (s.conn in ready or not alive) and s.conn.poll():
                    try:
                        msg = s.conn.recv()
                    except (EOFError, OSError):
                        break
                    if msg[0] == "progress":
                        _, index, phase, done, total = msg
                        bar.phase(index, f"{s.task.path.name}: {phase} {done}/{total}")
                    elif msg[0] == "done":
                        task, s.task = s.task, None
                        settle(task, msg[2], queue, bar, table, tasks)
                    if alive:
                        break
                if s.task is not None and not alive:
                    s.proc.join(1.0)
                    task, s.task = s.task, None
                    why = (
                        f"the worker process died (exit code {s.proc.exitcode}) after "
                        f"{time.monotonic() - s.started:.1f} s"
                    )
                    settle(task, crashed_row(task, settings, why), queue, bar, table, tasks)
    finally:
        for s in slots:
            s.stop()


# -- the command ------------------------------------------------------------------------------
def settings_from_args(args) -> Settings:
    return Settings(
        preset=args.preset,
        mode=args.mode,
        seed=args.seed,
        steps=args.steps,
        offsets=tuple(args.offset or ()),
        resolution=args.resolution,
        detail=args.detail,
        sharp=args.sharp,
        faces=args.faces,
        format=args.format,
        device=args.device,
        normals=args.normals,
        noise=args.noise,
        thickness=args.thickness,
        threads=args.threads,
    )


def run_batch(args) -> int:
    """``python -m lipsdf_blender batch``: returns the exit status (0: every shape ok,
    1: some failed after their retry)."""
    settings = settings_from_args(args)
    if args.jobs < 1:
        raise BadInputError(f"--jobs must be at least 1, got {args.jobs}")
    for name in ("threads", "cpus_per_task"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise BadInputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInputError(f"--out {out_dir} is a file, not a folder")
    paths = expand_inputs(args.inputs, out_dir)
    if args.ray:  # Ray missing or the cluster unreachable: said before anything is made
        from ..worker import cluster

        cluster.connect(args.ray, start_local=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = make_tasks(paths, out_dir, settings)
    runner = {"kind": "ray", "address": args.ray} if args.ray else {"kind": "local"}
    runner["jobs"] = args.jobs
    table = Table(out_dir, settings, runner)
    bar = Bar(len(tasks), quiet=args.quiet)
    queue = []
    for t in tasks:
        row = None if args.force else finished(t.folder, settings)
        if row is not None and row.get("hash") == t.digest:
            t.row = dict(row, input=str(t.path), skipped=True)
            bar.done(t)
        else:
            queue.append(t)
    table.write(tasks)
    try:
        if queue and args.ray:
            from .ray_tasks import run_ray

            runner.update(run_ray(tasks, queue, settings, args, bar, table))
        elif queue:
            run_local(tasks, queue, settings, args.jobs, bar, table)
    finally:
        summary = table.write(tasks)
        bar.close()
    sys.stdout.write(
        f"{summary['ok']} of {summary['shapes']} shapes ok ({summary['skipped']} already "
        f"done, {summary['failed']} failed, {summary['retried']} retried) in "
        f"{summary['wall_seconds']:.1f} s; table: {out_dir / 'results.csv'}\n"
    )
    return 0 if summary["failed"] == 0 else 1
