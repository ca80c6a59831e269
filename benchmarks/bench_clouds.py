"""Point-cloud fidelity: LipSDF's remesh of a cloud against screened Poisson and ball pivoting
(issue 10).

For every reference mesh and every cloud made from it (``cloud_inputs.py``: clean with and
without normals, noisy, sparse, partial, scanned from a few cameras, with outliers), one row per
tool, measured against the *mesh* the cloud came from by the mesh benchmark's own metrics
(``core.surfaces.reports.surface_report``):

- **ours**: ``python -m lipsdf_blender remesh CLOUD.ply -o OUT.obj --preset P --device D`` plus
  ``--ours-args``, the wall time of the CLI process (bench_peers.run_ours).
- **Open3D screened Poisson**, depth 9, without and with density trimming (vertices below the
  1 % density quantile dropped); **MeshLab screened Poisson**, depth 9, without and with
  MeshLab's quality-based trimming at the same quantile; **Open3D ball pivoting**, radii 1, 2,
  4 x the mean neighbour distance. Normals: the cloud's when it has them, else each library's
  own estimate and orientation (cloud_peers.py). Their seconds: normal estimation and
  reconstruction (and trimming) alone, without starting Python, importing or reading.

Run from the project root (peers from requirements-bench.txt)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_clouds.py                 # everything
    PYTHONPATH=. .venv/bin/python benchmarks/bench_clouds.py --shapes spot \\
        --clouds clean,noise0.5,partial_bottom --points 20000 --ours-args "--steps 200"

    PYTHONPATH=. .venv/bin/python benchmarks/bench_clouds.py --report A.json B.json  # tables

The shapes fetched by ``scan_data.py --fetch`` are skipped, with a line saying so, until then.
Writes benchmarks/results/clouds.json (every row, with machine and versions; rewritten after
every case), the clouds and results under benchmarks/results/clouds/<shape>/<cloud>/, the
tables (one per cloud, then the averages over shapes per cloud), and one render per
(shape, cloud) to benchmarks/renders/clouds/<shape>-<cloud>.png: input points | ours | Open3D
Poisson | Open3D Poisson trimmed | ball pivoting.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import (  # noqa: E402
    PROJECT,
    json_default,
    machine_info,
    markdown_table,
    mesh_npz,
    render_tiles,
    run_job,
    stitch,
)
from bench_peers import SIGNED_COLUMNS, run_ours  # noqa: E402
from cloud_inputs import CLOUDS, REFERENCES, diagonal, load_reference, make_cloud  # noqa: E402
from cloud_peers import trimmed_path  # noqa: E402
from reports import surface_report  # noqa: E402
from scan_data import MissingData  # noqa: E402

from lipsdf_blender.core.formats.files import save_points  # noqa: E402

PEER_JOBS = Path(__file__).resolve().parent / "cloud_peers.py"
DEFAULT_JSON = PROJECT / "benchmarks" / "results" / "clouds.json"
DEFAULT_WORK = PROJECT / "benchmarks" / "results" / "clouds"
DEFAULT_RENDERS = PROJECT / "benchmarks" / "renders" / "clouds"
#: peer job -> its rows' tool names (plain, trimmed)
PEERS = {
    "o3d-poisson": ("Open3D Poisson 9", "Open3D Poisson 9, trimmed"),
    "ml-poisson": ("MeshLab Poisson 9", "MeshLab Poisson 9, trimmed"),
    "o3d-bpa": ("Open3D ball pivoting", None),
}
#: rendered after the input points and ours, in this order
RENDERED = ("Open3D Poisson 9", "Open3D Poisson 9, trimmed", "Open3D ball pivoting")
TILE = (240, 240)
#: direction to the camera (Blender's z up) where the default view would miss what is hidden
VIEW = {"partial_bottom": (0.9, -1.3, -0.8), "partial_side": (1.6, -0.7, 0.6)}
#: points drawn as small octahedra: at most this many, of this radius (share of the diagonal)
RENDER_POINTS, POINT_RADIUS = 30_000, 0.003

COLUMNS = [("shape", "shape", "{}"), *SIGNED_COLUMNS[1:]]


def _names(text: str, known, what: str, p: argparse.ArgumentParser) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in known]
    if unknown:
        p.error(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return names


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="shapes: " + ", ".join(REFERENCES) + "; clouds: " + ", ".join(CLOUDS),
    )
    p.add_argument("--shapes", default=",".join(REFERENCES), help="comma-separated meshes")
    p.add_argument("--clouds", default=",".join(CLOUDS), help="comma-separated cloud variants")
    p.add_argument("--peers", default=",".join(PEERS), help="subset of " + ", ".join(PEERS))
    p.add_argument("--preset", default="fast", help="our preset")
    p.add_argument("--device", default="cpu", help="our device")
    p.add_argument("--ours-args", default="", help="more remesh arguments, e.g. '--steps 200'")
    p.add_argument("--points", type=int, default=100_000, help="points a cloud (not sparse)")
    p.add_argument("--samples", type=int, default=100_000, help="metric samples, IoU points")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_JSON, help="the JSON file")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, help="clouds and results go here")
    p.add_argument("--renders", default=str(DEFAULT_RENDERS), help="PNG folder ('' skips)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a tool may run")
    args = p.parse_args(argv)
    args.shapes = _names(args.shapes, REFERENCES, "shape(s)", p)
    args.clouds = _names(args.clouds, CLOUDS, "cloud(s)", p)
    args.peers = _names(args.peers, PEERS, "peer(s)", p)
    args.ours = ["--preset", args.preset, "--device", args.device, *shlex.split(args.ours_args)]
    return args


# -- running the tools ----------------------------------------------------------------------
def prepare(shape: str, cloud: str, V, F, up: int, args) -> dict:
    """The cloud's PLY for every tool (and an npz of its points for the render)."""
    folder = args.work / shape / cloud
    folder.mkdir(parents=True, exist_ok=True)
    P, N = make_cloud(V, F, cloud, args.points, args.seed, up)
    ply = folder / "cloud.ply"
    save_points(ply, P, N)
    return {"name": f"{shape}-{cloud}", "kind": "mesh", "obj": ply, "dir": folder, "P": P}


def run_peer(inp: dict, peer: str, timeout: float) -> list[dict]:
    """The peer's rows: one, or two for Poisson (plain, then density-trimmed)."""
    out = str(inp["dir"] / f"{peer}.npz")
    plain, trimmed = PEERS[peer]
    result = run_job([sys.executable, str(PEER_JOBS), peer, str(inp["obj"]), out], timeout)
    rows = [{"tool": plain, "output": out, **result}]
    if trimmed:
        rows.append({"tool": trimmed, "output": trimmed_path(out), **result})
        if "error" not in result:
            rows[1]["seconds"] = result["seconds_trimmed"]
    for row in rows:
        row.pop("seconds_trimmed", None)
        if "error" not in row:
            data = np.load(row["output"])
            row["V"], row["F"] = data["V"], data["F"]
    return rows


def measure(V_ref, F_ref, row: dict, samples: int, seed: int) -> dict:
    """Add the metrics to a row that has a result (``V``, ``F``)."""
    V, F = row.pop("V"), row.pop("F")
    if len(F) == 0:
        return {**row, "error": "empty result", "faces": 0}
    row.update(surface_report(V_ref, F_ref, V, F, n=samples, seed=seed))
    return row


# -- renders --------------------------------------------------------------------------------
def point_spheres(P, radius: float, limit: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``limit`` of the points ``P (n,3)`` (a random subset), each an octahedron of
    ``radius``: a mesh Workbench can draw."""
    P = np.asarray(P, dtype=np.float64)
    if len(P) > limit:
        P = P[np.random.default_rng(seed).choice(len(P), limit, replace=False)]
    corners = radius * np.vstack([np.eye(3), -np.eye(3)])
    faces = np.array(
        [[0, 1, 2], [1, 3, 2], [3, 4, 2], [4, 0, 2], [1, 0, 5], [3, 1, 5], [4, 3, 5], [0, 4, 5]]
    )
    V = (P[:, None, :] + corners[None]).reshape(-1, 3)
    F = (faces[None] + 6 * np.arange(len(P))[:, None, None]).reshape(-1, 3)
    return V, F


def render(
    inp: dict,
    rows: list[dict],
    diag: float,
    y_up: bool,
    args,
    view=None,
    tools=RENDERED,
    name: str | None = None,
) -> Path | None:
    """input points | ours | the rows of ``tools`` (default: Open3D Poisson | trimmed | ball
    pivoting), one camera looking from ``view`` (Blender's z up; None: the default view), one
    PNG, ``<renders>/<name>.png`` (default: the input's name)."""
    points = inp["dir"] / "points.npz"
    V, F = point_spheres(inp["P"], POINT_RADIUS * diag, RENDER_POINTS, args.seed)
    np.savez(points, V=V, F=F)
    items = [(f"{len(inp['P'])} points", str(points))]
    wanted = [r for r in rows if r["tool"].startswith("LipSDF")]
    wanted += [r for tool in tools for r in rows if r["tool"] == tool]
    for row in wanted:
        if "error" in row:
            continue
        items.append((row["tool"], mesh_npz(row["output"], inp["dir"])))
    pngs = [str(inp["dir"] / f"tile{i}.png") for i in range(len(items))]
    spec = {
        "items": [p for _, p in items],
        "pngs": pngs,
        "size": TILE,
        "y_up": y_up,
        "view": None if view is None else [float(v) for v in view],
    }
    error = render_tiles(spec, inp["dir"] / "render.json", args.timeout)
    titles = [t.replace("Open3D ", "").replace(", trimmed", " trim") for t, _ in items]
    png = Path(args.renders) / f"{name or inp['name']}.png"
    out = None if error else stitch(titles, pngs, png)
    # the results themselves stay; what was made only for the render goes (60 cases of it)
    for path in [points, *pngs] + [p for _, p in items[1:] if "ours-" in p]:
        Path(path).unlink(missing_ok=True)
    if error:
        print(f"  render failed: {error}", flush=True)
    return out


# -- output ---------------------------------------------------------------------------------
def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "open3d-cpu", "open3d", "pymeshlab", "bpy", "libigl"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


#: the averages over shapes, per cloud kind: the tools compared
AVERAGED = ("LipSDF", "Open3D Poisson 9", "MeshLab Poisson 9")
AVERAGE_COLUMNS = [
    ("cloud", "cloud", "{}"),
    ("tool", "tool", "{}"),
    ("shapes", "shapes", "{}"),
    ("Chamfer %", "chamfer_percent", "{:.3f}"),
    ("IoU", "iou", "{:.4f}"),
    ("normal°", "normal_error_mean_deg", "{:.1f}"),
    ("closed, one part", "closed_one_part", "{}"),
]


def _is(row: dict, tool: str) -> bool:
    """The row is ``tool``'s (ours under any preset; a peer's plain result, not trimmed)."""
    return row["tool"].startswith(tool) if tool == "LipSDF" else row["tool"] == tool


def averages(rows: list[dict], clouds) -> list[dict]:
    """Per cloud kind and tool of :data:`AVERAGED` that ran (``--peers`` may leave some out):
    the mean Chamfer, IoU and normal error over the shapes every one of those tools finished,
    and how many results were closed and in one part."""
    out = []
    for cloud in clouds:
        mine = [r for r in rows if r["cloud"] == cloud]
        tools = [t for t in AVERAGED if any(_is(r, t) for r in mine)]
        done = {t: {r["shape"] for r in mine if _is(r, t) and "iou" in r} for t in tools}
        shapes = set.intersection(*done.values()) if done else set()
        for tool in tools:
            kept = [r for r in mine if _is(r, tool) and r["shape"] in shapes and "iou" in r]
            if not kept:
                continue
            row = {"cloud": cloud, "tool": kept[0]["tool"], "shapes": len(kept)}
            for key in ("chamfer_percent", "iou", "normal_error_mean_deg"):
                row[key] = float(np.mean([r[key] for r in kept]))
            ok = sum(bool(r["watertight"]) and r["components"] == 1 for r in kept)
            row["closed_one_part"] = f"{ok}/{len(kept)}"
            out.append(row)
    return out


def tables(rows: list[dict], clouds) -> str:
    """Every row per cloud kind, then the averages over shapes."""
    parts = ["Distances in % of the reference mesh's bounding-box diagonal"]
    for cloud in clouds:
        parts += [f"### {cloud}", markdown_table([r for r in rows if r["cloud"] == cloud], COLUMNS)]
    parts += ["### averages over shapes", markdown_table(averages(rows, clouds), AVERAGE_COLUMNS)]
    return "\n\n".join(parts)


def report(paths: list[Path]) -> int:
    """The tables of results already written (several JSON files: their rows together, a
    later file's row replacing an earlier one for the same shape, cloud and tool)."""
    rows = {}
    for path in paths:
        for r in json.loads(Path(path).read_text())["rows"]:
            rows[(r["shape"], r["cloud"], r["tool"])] = r
    clouds = list(dict.fromkeys(r["cloud"] for r in rows.values()))
    print(tables(list(rows.values()), [c for c in CLOUDS if c in clouds]))
    return 0


def results_doc(args, machine: dict, rows: list, renders: list, **more) -> dict:
    """The JSON document of a run: machine, versions, settings (``more``), the ``rows`` and
    ``renders`` lists (filled in as the run goes)."""
    return {
        "machine": machine,
        "versions": versions(),
        **more,
        "samples": args.samples,
        "seed": args.seed,
        "ours": shlex.join(args.ours),
        "rows": rows,
        "renders": renders,
    }


def save_doc(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=json_default) + "\n")


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--report"]:
        return report([Path(p) for p in argv[1:]])
    args = parse_args(argv)
    machine = machine_info()
    print(f"machine: {machine['cpu']} ({machine['cpu_count']} cores)", flush=True)
    rows: list[dict] = []
    renders: list[str] = []
    doc = results_doc(args, machine, rows, renders, points=args.points)
    for shape in args.shapes:
        try:
            V, F, up = load_reference(shape)
        except MissingData as exc:
            print(f"- {shape}: skipped, {exc}", flush=True)
            continue
        diag = diagonal(V)
        for cloud in args.clouds:
            inp = prepare(shape, cloud, V, F, up, args)
            print(f"- {shape} / {cloud}: {len(inp['P'])} points; ours ...", flush=True)
            mine = [run_ours(inp, args.preset, args.ours, args.timeout)]
            for peer in args.peers:
                print(f"- {shape} / {cloud}: {peer} ...", flush=True)
                mine += run_peer(inp, peer, args.timeout)
            for row in mine:
                row.update(shape=shape, cloud=cloud, points=len(inp["P"]))
                if "error" not in row:
                    measure(V, F, row, args.samples, args.seed)
                else:
                    print(f"  {row['tool']} failed: {row['error']}", flush=True)
            if args.renders:
                png = render(inp, mine, diag, up == 1, args, VIEW.get(cloud))
                if png:
                    renders.append(str(png))
            rows.extend(mine)
            # after every case, so that a long run stopped early keeps what it measured
            save_doc(args.out, doc)

    print("\n" + tables(rows, args.clouds))
    print(f"\nwrote {args.out}" + (f" and {len(renders)} renders" if renders else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
