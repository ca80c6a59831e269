"""LipSDF demo (``make demo``): remesh and offset an input that voxel remeshing gets wrong.

The input is made in code: an open, self-intersecting surface in several parts (a head cap
with a mouth hole, two eyes poking through it, two open ear discs; ``open_monkey_like``).
The script trains a 1-Lipschitz field on it on the CPU, extracts the surface (level 0) and
two outward offsets in one pass, and writes into the output folder:

- ``source.obj``, ``remesh.obj``, ``offset_<p>pct.obj`` (offset by p % of the input's
  bounding-box diagonal) and the field ``demo.lipsdf``;
- ``demo.png``: source, remesh and offsets side by side, with face counts and watertightness.

Run from the project root::

    PYTHONPATH=. .venv/bin/python scripts/demo.py                 # fast preset, ~1-2 minutes
    PYTHONPATH=. .venv/bin/python scripts/demo.py --steps 200     # a quick look, < 1 minute
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402

from lipsdf_blender.core import metrics  # noqa: E402
from lipsdf_blender.core.extract import extract_levels  # noqa: E402
from lipsdf_blender.core.geometry import Geometry  # noqa: E402
from lipsdf_blender.core.io import save_mesh  # noqa: E402
from lipsdf_blender.core.train import PRESETS, train_field  # noqa: E402

#: Outward offsets as fractions of the input's bounding-box diagonal: a visibly thicker
#: shell that still shows the features, and a soft rounded hull.
OFFSETS = (0.03, 0.08)
VIEW = {"elev": 18.0, "azim": -62.0}
SOURCE_COLOR = np.array([0.85, 0.55, 0.35])
BACK_COLOR = np.array([0.45, 0.55, 0.75])  # inside of the open source shows where it is open
REMESH_COLOR = np.array([0.62, 0.72, 0.62])
OFFSET_COLOR = np.array([0.55, 0.65, 0.90])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("--preset", default="fast", choices=sorted(PRESETS))
    p.add_argument("--steps", type=int, help="training steps (default: the preset's)")
    p.add_argument("--resolution", type=int, help="extraction resolution (default: preset's)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# -- input ---------------------------------------------------------------------------------
def sample_shape() -> tuple[np.ndarray, np.ndarray]:
    """The demo input: ``open_monkey_like`` if the core has it, else a torus-sphere soup."""
    try:
        from lipsdf_blender.core.primitives import open_monkey_like
    except ImportError:
        return _torus_and_sphere_soup()
    return open_monkey_like()


def _torus_and_sphere_soup() -> tuple[np.ndarray, np.ndarray]:
    """A torus and a sphere that cut through it, as one unconnected triangle soup."""

    def grid(fn, nu, nv, wrap_v):
        u = np.linspace(0, 2 * np.pi, nu, endpoint=False)
        v = np.linspace(0, 2 * np.pi if wrap_v else np.pi, nv, endpoint=not wrap_v)
        V = fn(*np.meshgrid(u, v, indexing="ij")).reshape(-1, 3)
        i, j = np.meshgrid(np.arange(nu), np.arange(nv if wrap_v else nv - 1), indexing="ij")
        a, b = i * nv + j, (i + 1) % nu * nv + j
        c, d = (i + 1) % nu * nv + (j + 1) % nv, i * nv + (j + 1) % nv
        F = np.concatenate([np.stack([a, b, c], -1), np.stack([a, c, d], -1)]).reshape(-1, 3)
        return V, F

    torus = grid(
        lambda u, v: np.stack(
            [(1 + 0.3 * np.cos(v)) * np.cos(u), (1 + 0.3 * np.cos(v)) * np.sin(u), 0.3 * np.sin(v)],
            -1,
        ),
        64,
        24,
        True,
    )
    sphere = grid(
        lambda u, v: np.stack(
            [0.6 * np.sin(v) * np.cos(u) + 1.0, 0.6 * np.sin(v) * np.sin(u), 0.6 * np.cos(v)], -1
        ),
        48,
        25,
        False,
    )
    V = np.vstack([torus[0], sphere[0]])
    F = np.vstack([torus[1], sphere[1] + len(torus[0])])
    return V, F.astype(np.int64)


# -- field and surfaces --------------------------------------------------------------------
class ProgressPrinter:
    """Prints one line per tenth of training (the trainer calls back a few times a second)."""

    def __init__(self):
        self.decile = -1

    def __call__(self, p) -> None:
        if p.phase == "label":
            print("labelling samples (generalised winding number) ...", flush=True)
            return
        decile = 10 * p.step // max(p.total, 1)
        if decile > self.decile:
            self.decile = decile
            print(
                f"training {100 * p.step / p.total:3.0f}%  step {p.step:5d}/{p.total}  "
                f"loss {p.loss:8.5f}  {p.elapsed:5.1f} s  eta {p.eta:5.1f} s",
                flush=True,
            )


def describe(name: str, V, F) -> dict:
    return {
        "name": name,
        "faces": len(F),
        "watertight": metrics.is_watertight(F),
        "components": metrics.connected_components(F),
    }


# -- picture -------------------------------------------------------------------------------
def view_direction(elev: float, azim: float) -> np.ndarray:
    """Unit vector from the scene towards matplotlib's camera."""
    e, a = np.radians(elev), np.radians(azim)
    return np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])


def light_direction() -> np.ndarray:
    """A key light above and to the left of the camera, so shapes read as 3D."""
    d = view_direction(VIEW["elev"] + 35.0, VIEW["azim"] - 40.0)
    return d / np.linalg.norm(d)


def shade(V, F, color, back_color=None, alpha=1.0) -> np.ndarray:
    """Per-face RGBA from Lambert shading; faces seen from behind get ``back_color``."""
    N, _ = metrics.face_normals(V, F)
    facing = N @ view_direction(**VIEW) >= 0
    lambert = np.abs(N @ light_direction())  # two-sided: open surfaces are lit on both sides
    base = np.where(facing[:, None], color, color if back_color is None else back_color)
    rgb = base * (0.30 + 0.70 * lambert[:, None])
    return np.column_stack([np.clip(rgb, 0, 1), np.full(len(F), alpha)])


def draw(ax, layers, limits, title: str) -> None:
    """Draw ``layers`` (V, F, RGBA per face) in one collection so faces sort by depth."""
    tris = np.concatenate([V[F] for V, F, _ in layers])
    colors = np.concatenate([c for _, _, c in layers])
    ax.add_collection3d(Poly3DCollection(tris, facecolors=colors, edgecolors="none"))
    lo, hi = limits
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_zlim(lo[2], hi[2])
    ax.set_box_aspect(hi - lo)
    ax.view_init(**VIEW)
    ax.set_axis_off()
    ax.set_title(title, fontsize=11)


def title(info: dict, label: str) -> str:
    closed = "watertight" if info["watertight"] else "open"
    parts = f", {info['components']} parts" if info["components"] != 1 else ""
    return f"{label}\n{info['faces']:,} faces, {closed}{parts}"


def render(path: Path, source, remesh, offsets, infos) -> None:
    """Source | remesh | first offset | the remesh seen through the largest offset."""
    (Vs, Fs), (Vr, Fr) = source, remesh
    (Va, Fa), (Vb, Fb) = offsets[0], offsets[-1]
    V_all = np.vstack([Vs, Vb])
    lo, hi = V_all.min(axis=0), V_all.max(axis=0)
    centre, half = 0.5 * (lo + hi), 0.5 * (hi - lo).max() * 0.92
    limits = (centre - half, centre + half)
    panels = [
        ([(Vs, Fs, shade(Vs, Fs, SOURCE_COLOR, BACK_COLOR))], title(infos[0], "input soup")),
        ([(Vr, Fr, shade(Vr, Fr, REMESH_COLOR))], title(infos[1], "LipSDF remesh")),
        ([(Va, Fa, shade(Va, Fa, OFFSET_COLOR))], title(infos[2], infos[2]["name"])),
        (
            [
                (Vr, Fr, shade(Vr, Fr, REMESH_COLOR)),
                (Vb, Fb, shade(Vb, Fb, OFFSET_COLOR, alpha=0.22)),
            ],
            title(infos[-1], infos[-1]["name"] + " over the remesh"),
        ),
    ]
    fig = plt.figure(figsize=(16, 4.6), dpi=110)
    for k, (layers, text) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1, projection="3d")
        draw(ax, layers, limits, text)
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.9, wspace=0)
    fig.savefig(path, facecolor="white")
    plt.close(fig)


# -- main ----------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    V, F = sample_shape()
    geom = Geometry.mesh(V, F)
    diag = geom.diagonal()
    print(f"input: {len(V)} vertices, {len(F)} faces, open and self-intersecting", flush=True)

    overrides = {"steps": args.steps} if args.steps else {}
    field = train_field(
        geom,
        args.preset,
        device="cpu",
        seed=args.seed,
        progress=ProgressPrinter(),
        **overrides,
    )
    rec = field.record
    print(
        f"trained on {rec['device']}: labelling {rec['seconds_labelling']:.1f} s, "
        f"training {rec['seconds_training']:.1f} s, final loss {rec['final_loss']:.5f}",
        flush=True,
    )

    resolution = args.resolution or PRESETS[args.preset].resolution
    levels = [0.0, *(f * diag for f in OFFSETS)]
    print(f"extracting levels {', '.join(f'{x:.3f}' for x in levels)} at {resolution}^3 ...")
    results = extract_levels(field, levels, resolution=resolution)
    stats = results[0].stats
    print(
        f"extracted in {stats.seconds:.1f} s with {stats.evaluations:,} field evaluations "
        f"({100 * stats.ratio:.1f}% of a dense grid)",
        flush=True,
    )

    names = ["source", "remesh", *(f"offset_{round(100 * f)}pct" for f in OFFSETS)]
    meshes = [(V, F), *((r.vertices, r.faces) for r in results)]
    infos = []
    for name, (Vm, Fm) in zip(names, meshes, strict=True):
        save_mesh(args.out / f"{name}.obj", Vm, Fm)
        infos.append(describe(name, Vm, Fm))
    for info, f in zip(infos[2:], OFFSETS, strict=True):
        info["name"] = f"offset +{100 * f:g}% of diagonal"
    field.save(args.out / "demo.lipsdf")

    print("rendering demo.png ...", flush=True)
    render(args.out / "demo.png", meshes[0], meshes[1], meshes[2:], infos)

    print(f"\ndone in {time.perf_counter() - t_start:.1f} s; wrote to {args.out}/:")
    for name, info in zip(names, infos, strict=True):
        closed = "watertight" if info["watertight"] else "not watertight"
        print(
            f"  {name + '.obj':<20} {info['faces']:>8,} faces  {closed:<15} "
            f"{info['components']} component(s)"
        )
    print(f"  {'demo.lipsdf':<20} field ({rec['preset']} preset, {rec['settings']['steps']} steps)")
    print(f"  {'demo.png':<20} picture")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
