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

import csv
import glob
import io
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

from ..core.errors import BadInputError
from ..worker.protocol import save_bytes
from .shape import COLUMNS, Settings, empty_row, file_hash, finished, folder_name

#: File endings searched for in folders (explicitly named files may have any ending).
INPUT_SUFFIXES = (".obj", ".ply", ".stl", ".off", ".xyz", ".pts", ".gltf", ".glb", ".3mf")
#: Threads that hash the inputs before the first shape starts.
HASH_THREADS = min(8, os.cpu_count() or 1)
#: Tries per shape: the first, and one retry after a failure or a crash.
TRIES = 2
#: Seconds between rewrites of the table while a batch runs (each shape's result.json is
#: written as it finishes; the table is complete at the end).
TABLE_EVERY = 2.0


@dataclass
class Task:
    """One input: where it is, its hash, its output folder and its row so far."""

    index: int
    path: Path
    digest: str
    folder: Path
    row: dict
    attempts: int = 0
    errors: list = field(default_factory=list)


# -- inputs -----------------------------------------------------------------------------------
def expand_inputs(items, out_dir: Path) -> list[Path]:
    """Files, folders and glob patterns -> input files (sorted per item, each once).

    Raises
    ------
    BadInputError
        An item that is neither a file, a folder nor a pattern that matches, or no input
        at all; the message names it.
    """
    out_dir = Path(out_dir).resolve()
    found: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        r = p.resolve()
        if r in seen or r.is_relative_to(out_dir):
            return
        seen.add(r)
        found.append(p)

    def walk(folder: Path) -> list[Path]:
        return sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES
        )

    for item in items:
        p = Path(item)
        if p.is_file():
            add(p)
        elif p.is_dir():
            for q in walk(p):
                add(q)
        elif glob.has_magic(str(item)):
            matches = sorted(Path(m) for m in glob.glob(str(item), recursive=True))
            files = [m for m in matches if m.is_file()]
            for m in matches:
                files += walk(m) if m.is_dir() else []
            if not files:
                raise BadInputError(f"no input file matches {item!r}")
            for q in files:
                add(q)
        else:
            raise BadInputError(f"{item!r} is not a file, a folder or a pattern that matches")
    if not found:
        raise BadInputError(
            "no input files: give mesh, point cloud or curve files, folders holding them "
            f"({' '.join(INPUT_SUFFIXES)}) or glob patterns"
        )
    return found


def make_tasks(paths, out_dir: Path, settings: Settings) -> list[Task]:
    # hashlib lets go of the GIL while it hashes: threads read and hash files side by side
    with ThreadPoolExecutor(max_workers=HASH_THREADS) as pool:
        digests = list(pool.map(file_hash, paths))
    tasks = []
    for i, (p, digest) in enumerate(zip(paths, digests, strict=True)):
        name = folder_name(p, digest)
        tasks.append(Task(i, p, digest, out_dir / name, empty_row(p, digest, name, settings)))
    return tasks


# -- the table --------------------------------------------------------------------------------
class Table:
    """``results.csv`` and ``results.json`` in the output folder (:meth:`write`)."""

    def __init__(self, out_dir: Path, settings: Settings, runner: dict):
        self.out_dir, self.settings, self.runner = out_dir, settings, runner
        self.started = time.time()
        self.t0 = time.perf_counter()
        self.last_write = -float("inf")

    def summary(self, tasks) -> dict:
        rows = [t.row for t in tasks]
        seconds = time.perf_counter() - self.t0
        ok_ran = sum(r["status"] == "ok" and not r["skipped"] for r in rows)
        return {
            "shapes": len(rows),
            "ok": sum(r["status"] == "ok" for r in rows),
            "failed": sum(r["status"] in ("failed", "crashed") for r in rows),
            "skipped": sum(bool(r["skipped"]) for r in rows),
            "retried": sum((r["attempts"] or 0) > 1 for r in rows),
            "wall_seconds": round(seconds, 2),
            "shapes_per_minute": round(60.0 * ok_ran / seconds, 3) if ok_ran else 0.0,
        }

    def write(self, tasks, force: bool = True) -> dict | None:
        """Rewrite both files and return the summary; with ``force=False`` at most every
        :data:`TABLE_EVERY` seconds, else nothing is done and ``None`` returned (10,000 rows
        rewritten after every shape would cost more than the shapes)."""
        if not force and time.monotonic() - self.last_write < TABLE_EVERY:
            return None
        self.last_write = time.monotonic()
        summary = self.summary(tasks)
        rows = [t.row for t in tasks]
        doc = {
            "settings": self.settings.to_dict(),
            "settings_key": self.settings.key(),
            "runner": self.runner,
            "machine": {"host": platform.node(), "cpus": os.cpu_count()},
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started)),
            "summary": summary,
            "rows": rows,
        }
        save_bytes(self.out_dir / "results.json", json.dumps(doc, indent=1))
        text = io.StringIO(newline="")
        w = csv.DictWriter(text, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: _cell(r.get(c)) for c in COLUMNS})
        save_bytes(self.out_dir / "results.csv", text.getvalue())
        return summary


def _cell(v):
    if isinstance(v, list):
        return ";".join(str(x) for x in v)
    return "" if v is None else v


# -- the progress bar -------------------------------------------------------------------------
class Bar:
    """A tqdm bar over shapes on stderr (ok / failed / skipped counts; phases of running ones)."""

    def __init__(self, total: int, quiet: bool = False):
        from tqdm import tqdm

        self.bar = tqdm(
            total=total, unit="shape", file=sys.stderr, disable=quiet, mininterval=0.5,
            dynamic_ncols=True, smoothing=0.1,
        )  # fmt: skip
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}
        self.running: dict[int, str] = {}

    def phase(self, index: int, text: str) -> None:
        self.running[index] = text
        self._post()

    def done(self, task: Task) -> None:
        self.running.pop(task.index, None)
        r = task.row
        key = "skipped" if r["skipped"] else ("ok" if r["status"] == "ok" else "failed")
        self.counts[key] += 1
        self._post()
        self.bar.update(1)
        if r["status"] != "ok":
            self.bar.write(f"lipsdf: {task.path}: {r['status']}: {r['error']}", file=sys.stderr)

    def _post(self) -> None:
        c = self.counts
        text = f"ok {c['ok']} failed {c['failed']} skipped {c['skipped']}"
        if self.running:
            text += " | " + ", ".join(self.running.values())
        self.bar.set_postfix_str(text[:120], refresh=False)

    def close(self) -> None:
        self.bar.close()


# -- outcome of one try -----------------------------------------------------------------------
def settle(task: Task, row: dict, queue: list, bar: Bar, table: Table, tasks) -> None:
    """Record one try's row; queue a retry after a failure (at most :data:`TRIES` tries)."""
    task.attempts += 1
    row = dict(row)
    row["input"], row["attempts"] = str(task.path), task.attempts
    row["skipped"] = False
    if task.errors:
        row["first_error"] = task.errors[0]
    task.row = row
    if row["status"] != "ok" and task.attempts < TRIES:
        task.errors.append(f"{row['status']}: {row['error']}")
        queue.append(task)  # after the others
        bar.phase(task.index, f"{task.path.name}: retry")
    else:
        bar.done(task)
    table.write(tasks, force=False)


def crashed_row(task: Task, settings: Settings, why: str) -> dict:
    row = empty_row(task.path, task.digest, task.folder.name, settings)
    row.update(status="crashed", error=why)
    return row


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
