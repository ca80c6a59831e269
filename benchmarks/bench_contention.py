"""The fast remesh under CPU load: alone, beside busy processes, beside a second remesh.

Each run is ``python -m lipsdf_blender remesh INPUT --preset fast`` in a fresh process, timed
from start to exit. Competitors:

- ``busy-1``: one process keeping one core busy (a Python loop);
- ``busy-2``: one process keeping two cores busy (two threads hashing, which frees the GIL),
  as a render or a bake does;
- ``second``: a second identical remesh started at the same moment (the time of the first).

Versions: ``new`` (this checkout), ``fixed`` (this checkout with ``LIPSDF_FAIR_SHARE=0``:
the thread count fixed, as before), and ``--old-rev REV`` (that revision, exported from git;
its runs past ``--cap`` seconds are stopped and reported as more than the cap).

Run on an otherwise quiet machine (nothing else may run: the competitors are the point)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_contention.py --old-rev 227bab7
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_common import write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
MESHES = ROOT.parent / "shared" / "meshes"

SPIN_1 = "while True: pass"
SPIN_2 = (
    "import hashlib, threading\n"
    "b = bytes(1 << 20)\n"
    "def f():\n"
    "    while True: hashlib.sha256(b).digest()\n"
    "for _ in range(2): threading.Thread(target=f, daemon=True).start()\n"
    "threading.Event().wait()\n"
)


def export_rev(rev: str, dest: Path) -> Path:
    """The package as it was at ``rev`` (git archive), for before/after runs."""
    dest.mkdir(parents=True, exist_ok=True)
    tar = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "lipsdf_blender"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=tar, check=True)
    return dest


#: Extra remesh arguments (``--steps``), set by ``main``.
EXTRA: list[str] = []


def remesh_cmd(src: Path, mesh: Path, out: Path) -> tuple[list[str], dict]:
    env = dict(os.environ, PYTHONPATH=str(src))
    env.pop("OMP_NUM_THREADS", None)
    cmd = [sys.executable, "-m", "lipsdf_blender", "remesh", str(mesh), "-o", str(out)]
    return cmd + ["--preset", "fast", *EXTRA], env


def one(src: Path, mesh: Path, competitor: str, fair: bool, cap: float, tmp: Path) -> dict:
    """Seconds of one remesh beside ``competitor``; ``None`` past the cap."""
    cmd, env = remesh_cmd(src, mesh, tmp / "a.obj")
    if not fair:
        env["LIPSDF_FAIR_SHARE"] = "0"
    others = []
    if competitor == "busy-1":
        others.append(subprocess.Popen([sys.executable, "-c", SPIN_1]))
    elif competitor == "busy-2":
        others.append(subprocess.Popen([sys.executable, "-c", SPIN_2]))
    elif competitor == "second":
        cmd2, env2 = remesh_cmd(src, mesh, tmp / "b.obj")
        env2.update({k: env[k] for k in ("LIPSDF_FAIR_SHARE",) if k in env})
        others.append(
            subprocess.Popen(cmd2, env=env2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
    time.sleep(0.5 if others else 0.0)  # the competitor is running when we start
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = p.communicate(timeout=cap)
        seconds = time.perf_counter() - t0
        if p.returncode != 0:
            raise RuntimeError(f"remesh failed: {err.decode()[-2000:]}")
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        seconds = None
    second = None
    for o in others:
        if competitor == "second" and seconds is not None:
            try:
                o.wait(timeout=cap)
                second = time.perf_counter() - t0
            except subprocess.TimeoutExpired:
                pass
        o.kill()
        o.wait()
    return {"seconds": seconds, "second_seconds": second}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", default=str(MESHES / "spot.obj"))
    p.add_argument("--old-rev", help="also time this git revision (e.g. 227bab7)")
    p.add_argument("--competitors", default="none,busy-1,busy-2,second")
    p.add_argument("--versions", default="new,fixed", help="new, fixed (and old with --old-rev)")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--cap", type=float, default=300.0, help="seconds before a run is stopped")
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--json", type=Path, default=OUT / "contention.json")
    args = p.parse_args(argv)
    EXTRA[:] = ["--steps", str(args.steps)] if args.steps else []
    mesh = Path(args.input)
    versions = [v for v in args.versions.split(",") if v] + (["old"] if args.old_rev else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        srcs = {"new": ROOT, "fixed": ROOT}
        if args.old_rev:
            srcs["old"] = export_rev(args.old_rev, tmp / "old")
        print(f"fast remesh of {mesh.name}, {os.cpu_count()} cores; seconds (x alone)\n")
        print("| version | competitor | seconds | × alone | second job s |\n|---|---|---|---|---|")
        for v in versions:
            alone = None
            for comp in args.competitors.split(","):
                for _ in range(args.repeats):
                    r = one(srcs[v], mesh, comp, v == "new", args.cap, tmp)
                    if comp == "none":
                        alone = r["seconds"]
                    ratio = r["seconds"] / alone if r["seconds"] and alone else None
                    rows.append({"version": v, "competitor": comp, **r, "ratio": ratio})
                    s = f"{r['seconds']:.1f}" if r["seconds"] else f"> {args.cap:.0f}"
                    x = f"{ratio:.2f}" if ratio else "-"
                    s2 = f"{r['second_seconds']:.1f}" if r["second_seconds"] else "-"
                    print(f"| {v} | {comp} | {s} | {x} | {s2} |", flush=True)
    doc = {
        "input": mesh.name,
        "cores": os.cpu_count(),
        "old_rev": args.old_rev,
        "cap": args.cap,
        "rows": rows,
    }
    write_json(args.json, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
