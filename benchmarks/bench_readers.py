"""Mesh and point-cloud readers: load time and peak memory, before/after and against libraries
(issue 11).

One command, from the project root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_readers.py                  # 1M faces/points
    PYTHONPATH=. .venv/bin/python benchmarks/bench_readers.py --n 100000 --repeat 1 \\
        --readers old,new --cases ply_mesh,xyz_cloud

Cases (``--n`` faces for meshes, points for clouds; the files are made once and kept in
``--data``):

- ``ply_mesh``: binary PLY torus, float xyz, ``uchar int`` triangle lists (``save_mesh``).
- ``obj_mesh``: the same torus as OBJ text (``v`` / ``f``).
- ``stl_mesh``: the same torus as binary STL (corners merged on reading).
- ``ply_scan``: binary PLY cloud as scanners write it: float ``x y z nx ny nz``, uchar RGBA,
  float quality, an empty face element (as ``tests/conftest.py:write_scan_ply``).
- ``ply_scan_ascii``: the same cloud as ASCII PLY.
- ``xyz_cloud``: ``x y z nx ny nz`` text.

Readers:

- ``old``: ``load_geometry`` of the readers at ``--old-rev``
  (``lipsdf_blender/core/formats/``, taken with ``git show`` into a temporary module), so a
  later re-run reproduces the before/after.
- ``new``: ``load_geometry`` of the working tree.
- ``trimesh``, ``meshio``: the library alone (``trimesh.load(process=False)``,
  ``meshio.read``), arrays only, no checks; skipped when not importable.

Every (case, reader, repeat) runs in a fresh Python process: the import of the reader and its
library is timed apart (``import s``), then one load (``load s``); ``peak MiB`` is the rise of
the process's peak resident set (``VmHWM``, reset after the imports) over its resident set
before the load: file bytes, temporaries and result together. The table gives the fastest
load of the repeats and the smallest peak (the least disturbed run on a shared machine),
and what was read (vertices, faces, normals) so a reader that loses data shows.

Writes ``benchmarks/results/readers.json`` (every run, machine, versions).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import PROJECT, json_default, machine_info, markdown_table  # noqa: E402

CASES = ("ply_mesh", "obj_mesh", "stl_mesh", "ply_scan", "ply_scan_ascii", "xyz_cloud")
READERS = ("old", "new", "trimesh", "meshio")
EXT = {
    "ply_mesh": ".ply",
    "obj_mesh": ".obj",
    "stl_mesh": ".stl",
    "ply_scan": ".ply",
    "ply_scan_ascii": ".ply",
    "xyz_cloud": ".xyz",
}
COLUMNS = (
    ("case", "case", "{}"),
    ("reader", "reader", "{}"),
    ("load s", "load_s", "{:.2f}"),
    ("import s", "import_s", "{:.2f}"),
    ("peak MiB", "peak_mib", "{:.0f}"),
    ("kind", "kind", "{}"),
    ("vertices", "n_vertices", "{}"),
    ("faces", "n_faces", "{}"),
    ("normals", "normals", "{}"),
)


# -- input files ------------------------------------------------------------------------------


def make_inputs(folder: Path, n: int, cases) -> dict[str, Path]:
    """Write each case's file for size ``n`` unless it is already there; return the paths."""
    import numpy as np

    from lipsdf_blender.core.inputs.primitives import torus_mesh

    folder.mkdir(parents=True, exist_ok=True)
    paths = {c: folder / f"{c}-{n}{EXT[c]}" for c in cases}
    todo = [c for c in cases if not paths[c].exists()]
    if not todo:
        return paths
    # torus with 2 * a * b triangles, a : b = 2 : 1
    b = max(3, int(round((n / 4) ** 0.5)))
    V, F = torus_mesh(1.0, 0.3, 2 * b, b)
    rng = np.random.default_rng(0)
    P = rng.normal(size=(n, 3))
    N = P / np.linalg.norm(P, axis=1, keepdims=True)
    P = N * [1.0, 0.7, 0.4]
    colours = rng.integers(0, 256, (n, 4)).astype(np.uint8)
    quality = rng.uniform(0, 1, n).astype(np.float32)
    for c in todo:
        tmp = paths[c].with_name(paths[c].name + ".part")
        if c in ("ply_mesh", "obj_mesh", "stl_mesh"):
            # the writers of the old revision's io.py are the new one's (kept), so the files
            # are the same whichever tree writes them
            from lipsdf_blender.core.formats.files import save_mesh

            save_mesh(tmp.with_suffix(EXT[c]), V, F)
            tmp.with_suffix(EXT[c]).rename(paths[c])
            continue
        if c == "xyz_cloud":
            np.savetxt(tmp, np.hstack([P, N]), fmt="%.9g")
        else:
            _write_scan_ply(tmp, P, N, colours, quality, ascii=c == "ply_scan_ascii")
        tmp.rename(paths[c])
    return paths


def _write_scan_ply(path: Path, P, N, colours, quality, ascii: bool) -> None:
    import numpy as np

    names = ("x", "y", "z", "nx", "ny", "nz")
    head = [
        "ply",
        f"format {'ascii' if ascii else 'binary_little_endian'} 1.0",
        "comment made by a scanner",
        f"element vertex {len(P)}",
        *(f"property float {c}" for c in names),
        *(f"property uchar {c}" for c in ("red", "green", "blue", "alpha")),
        "property float quality",
        "element face 0",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    with open(path, "wb") as fh:
        fh.write(("\n".join(head) + "\n").encode())
        if ascii:
            rows = np.hstack([P, N, colours, quality[:, None]])
            np.savetxt(fh, rows, fmt=["%.9g"] * 6 + ["%d"] * 4 + ["%.6g"])
            return
        dt = np.dtype(
            [(c, "<f4") for c in names]
            + [(c, "u1") for c in ("red", "green", "blue", "alpha")]
            + [("quality", "<f4")]
        )
        rec = np.empty(len(P), dt)
        for j, c in enumerate(names):
            rec[c] = (P if j < 3 else N)[:, j % 3]
        for j, c in enumerate(("red", "green", "blue", "alpha")):
            rec[c] = colours[:, j]
        rec["quality"] = quality
        fh.write(rec.tobytes())


def old_module(rev: str, folder: Path) -> Path:
    """The package ``lipsdf_blender`` at ``rev``, unpacked under ``folder``; the folder above it."""
    root = folder / f"rev-{rev}"
    root.mkdir()
    archive = subprocess.run(
        ["git", "archive", rev, "lipsdf_blender"], cwd=PROJECT, check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


# -- one measurement (runs in its own process) ------------------------------------------------


def _status_mib(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


def _reset_peak() -> float:
    """Start a new peak at the current resident set; return that set (MiB).

    ``ru_maxrss`` is no use here: Linux carries the parent's peak into a forked child, so a
    child of a big parent starts "at" the parent's peak. ``VmHWM`` belongs to the process
    image, and writing 5 to ``clear_refs`` resets it to ``VmRSS``.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # no reset: the peak then also covers the imports (an over-estimate)
    return _status_mib("VmRSS")


def child(reader: str, path: str, old_path: str | None) -> dict:
    """Import ``reader``, load ``path`` once; seconds, peak rise and what was read."""
    t0 = time.perf_counter()
    import numpy as np

    if reader == "old":
        import importlib

        # the whole package as it was at that revision, ahead of this one on the path
        sys.path.insert(0, old_path)
        try:  # the readers' home since the package was grouped by stage
            mod = importlib.import_module("lipsdf_blender.core.formats.files")
        except ModuleNotFoundError:
            mod = importlib.import_module("lipsdf_blender.core.io")
        load = mod.load_geometry
    elif reader == "new":
        # trimesh is imported only by the glTF/GLB/3MF reader, none of these cases
        from lipsdf_blender.core.formats import files as io

        load = io.load_geometry
    elif reader == "trimesh":
        import trimesh

        def load(p):
            return trimesh.load(p, process=False)
    else:
        import meshio

        load = meshio.read
    import_s = time.perf_counter() - t0
    base = _reset_peak()
    t0 = time.perf_counter()
    out = load(path)
    load_s = time.perf_counter() - t0
    peak = _status_mib("VmHWM") - base

    if reader in ("old", "new"):
        V, F, N, kind = out.vertices, out.faces, out.normals, out.kind
    elif reader == "trimesh":
        geoms = list(out.geometry.values()) if hasattr(out, "geometry") else [out]
        V = np.concatenate([np.asarray(g.vertices) for g in geoms])
        fs = [np.asarray(g.faces) for g in geoms if hasattr(g, "faces")]
        F = np.concatenate(fs) if fs else None
        N = None
        if F is None:
            N = geoms[0].metadata.get("vertex_normals") if len(geoms) == 1 else None
            N = N if N is not None else getattr(geoms[0], "vertex_normals", None)
            if N is None and "_ply_raw" in geoms[0].metadata:
                d = geoms[0].metadata["_ply_raw"]["vertex"]["data"]
                names = d.dtype.names if isinstance(d, np.ndarray) else tuple(d)
                N = np.column_stack([d[c] for c in ("nx", "ny", "nz")]) if "nx" in names else None
        kind = type(out).__name__
    else:
        V = out.points
        tri = [c.data for c in out.cells if c.type == "triangle"]
        F = np.concatenate(tri) if tri else None
        pdn = out.point_data
        N = pdn.get("normals") if "normals" in pdn else pdn.get("nx")
        kind = "mesh" if F is not None else "points"
    return {
        "import_s": import_s,
        "load_s": load_s,
        "peak_mib": peak,
        "kind": kind,
        "n_vertices": int(len(V)),
        "n_faces": 0 if F is None else int(len(F)),
        "normals": "yes" if N is not None and np.size(N) else "no",
        "vertex_sum": float(np.asarray(V, dtype=np.float64).sum()),
    }


def run_child(reader: str, path: Path, old_path: Path | None, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", reader, str(path), str(old_path or "")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT), env.get("PYTHONPATH")]))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout:.0f} s"}
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last[:160]}
    return json.loads(p.stdout.strip().splitlines()[-1])


# -- the whole run ----------------------------------------------------------------------------


def _available(reader: str) -> bool:
    if reader in ("old", "new"):
        return True
    try:
        __import__(reader)
    except ImportError:
        return False
    return True


def _versions() -> dict:
    out = {}
    for dist in ("numpy", "trimesh", "meshio", "lxml", "networkx"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="faces of meshes, points of clouds")
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--readers", default=",".join(READERS))
    ap.add_argument("--old-rev", default="227bab7", help="git revision of the 'old' reader")
    ap.add_argument("--repeat", type=int, default=3, help="fresh processes per case and reader")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per load")
    ap.add_argument(
        "--data",
        type=Path,
        default=Path(tempfile.gettempdir()) / "lipsdf-bench-readers",
        help="where the input files are made and kept",
    )
    ap.add_argument("--out", type=Path, default=PROJECT / "benchmarks/results/readers.json")
    args = ap.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    readers = [r for r in args.readers.split(",") if r]
    for name, given, known in (("case", cases, CASES), ("reader", readers, READERS)):
        bad = sorted(set(given) - set(known))
        if bad:
            ap.error(f"unknown {name} {', '.join(bad)}; choose from {', '.join(known)}")
    skipped = [r for r in readers if not _available(r)]
    readers = [r for r in readers if r not in skipped]

    paths = make_inputs(args.data, args.n, cases)
    with tempfile.TemporaryDirectory() as tmp:
        old_path = old_module(args.old_rev, Path(tmp)) if "old" in readers else None
        runs, rows = [], []
        for c in cases:
            for r in readers:
                mine = []
                for i in range(args.repeat):
                    res = run_child(r, paths[c], old_path, args.timeout)
                    res.update(case=c, reader=r, repeat=i)
                    mine.append(res)
                    print(f"{c:15s} {r:8s} #{i}: {res.get('load_s', res.get('error'))}", flush=True)
                runs += mine
                ok = [m for m in mine if "error" not in m]
                if not ok:
                    rows.append({"case": c, "reader": r, "error": mine[0]["error"]})
                    continue
                best = dict(min(ok, key=lambda m: m["load_s"]))
                best["peak_mib"] = min(m["peak_mib"] for m in ok)
                best["import_s"] = min(m["import_s"] for m in ok)
                rows.append(best)

    table = markdown_table(rows, COLUMNS, error_key="kind")
    print()
    print(table)
    if skipped:
        print(f"\nnot importable, skipped: {', '.join(skipped)}")
    result = {
        "machine": machine_info(),
        "versions": _versions(),
        "old_rev": args.old_rev,
        "n": args.n,
        "repeat": args.repeat,
        "files": {c: {"name": p.name, "bytes": p.stat().st_size} for c, p in paths.items()},
        "skipped": skipped,
        "rows": rows,
        "runs": runs,
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=json_default) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        _, _, reader, path, old = sys.argv
        print(json.dumps(child(reader, path, old or None)))
        sys.exit(0)
    sys.exit(main())
