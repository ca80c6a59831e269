"""A batch's shapes and its bookkeeping: inputs expanded into tasks, the results table, the
progress bar, and what happens after a shape fails or its process dies.

Shared by the local workers (:mod:`.runner`) and the Ray tasks (:mod:`.ray_tasks`).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import BadInputError
from ..worker.protocol import save_bytes
from .shape import COLUMNS, Settings, empty_row, file_hash, folder_name

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
