"""Helpers shared by the side-by-side benchmarks (bench_peers.py, bench_clouds.py).

Running a tool in its own process, reading its ``RESULT {json}`` line, markdown tables, the
machine's description, JSON output and stitching Workbench tiles into one PNG.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]
MESH_DIR = PROJECT.parent / "shared" / "meshes"


def env() -> dict:
    """The environment of a tool's process: this checkout first on ``PYTHONPATH``."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), e.get("PYTHONPATH")]))
    return e


def tail(text: str) -> str:
    """The last meaningful line of a tool's output (Blender's EGL noise left out)."""
    lines = [s for s in text.strip().splitlines() if s.strip() and "EGL Error" not in s]
    return lines[-1][:300] if lines else "no output"


def run_job(cmd: list[str], timeout: float) -> dict:
    """Run a peer's job script; returns its ``RESULT`` dict plus ``seconds_wall``, or
    ``{"error": ...}``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=PROJECT, env=env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    result = [s for s in proc.stdout.splitlines() if s.startswith("RESULT ")]
    if proc.returncode != 0 or not result:
        return {"error": tail(proc.stderr or proc.stdout), "seconds_wall": wall}
    return {**json.loads(result[-1][len("RESULT ") :]), "seconds_wall": wall}


def _cell(row: dict, key: str, fmt: str) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return fmt.format(value)


def markdown_table(rows: list[dict], columns, error_key: str = "faces") -> str:
    """One markdown table: ``columns`` are ``(title, key, format)``; a failed row (``error``)
    says so in the ``error_key`` column."""
    head = "| " + " | ".join(c[0].replace("|", "\\|") for c in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    at = next((i for i, c in enumerate(columns) if c[1] == error_key), len(columns) - 1)
    body = []
    for r in rows:
        cells = [_cell(r, k, f) for _, k, f in columns]
        if "error" in r:
            cells[at] = f"failed: {r['error']}"
        body.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join([head, rule, *body])


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cpu_count": cores, "python": platform.python_version()}


def json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def stitch(titles: list[str], pngs: list[str], out: Path) -> Path:
    """Tiles side by side under their titles, one PNG of 128 colours (Workbench's shading needs
    no more, and the file stays well under 200 KB)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt
    from PIL import Image  # matplotlib's own dependency

    n = len(pngs)
    fig, axes = plt.subplots(1, n, figsize=(2.4 * n, 2.62), dpi=100, squeeze=False)
    for ax, title, png in zip(axes[0], titles, pngs, strict=True):
        ax.imshow(mpimg.imread(png))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.92, wspace=0.02)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=100, format="png")
    plt.close(fig)
    Image.open(buf).convert("RGB").quantize(colors=128).save(out, optimize=True)
    return out


def mesh_npz(path: str, folder: Path) -> str:
    """A result mesh as ``V``/``F`` arrays the render job reads: ``.obj`` files are converted
    into ``folder``, ``.npz`` ones returned as they are."""
    if not path.endswith(".obj"):
        return path
    from lipsdf_blender.core.formats.files import load_geometry

    g = load_geometry(path)
    out = str(folder / (Path(path).stem + ".npz"))
    np.savez(out, V=g.vertices, F=g.faces)
    return out


def render_tiles(spec: dict, spec_path: Path, timeout: float) -> str | None:
    """Run peer_jobs.py's Workbench ``render`` job on ``spec``; returns an error or None."""
    spec_path.write_text(json.dumps(spec))
    jobs = Path(__file__).resolve().parent / "peer_jobs.py"
    try:
        proc = subprocess.run(
            [sys.executable, str(jobs), "render", str(spec_path)],
            cwd=PROJECT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s"
    return None if proc.returncode == 0 else tail(proc.stderr or proc.stdout)


def write_json(path: Path, doc: dict) -> None:
    """A benchmark's results as JSON (folders made), and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {path}")
