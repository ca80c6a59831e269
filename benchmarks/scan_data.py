"""Public data the cloud benchmarks fetch once: raw scans (bench_scans.py) and more reference
meshes (cloud_inputs.py), kept in a cache folder outside git.

    PYTHONPATH=. .venv/bin/python benchmarks/scan_data.py            # what is there, what is not
    PYTHONPATH=. .venv/bin/python benchmarks/scan_data.py --fetch    # download what is missing

The cache is ``$LIPSDF_BENCH_DATA``, else ``~/.cache/lipsdf-bench``. Each file is pinned to a
commit of a public GitHub repository and checked by SHA-256, so every machine measures the same
bytes. Without network, copy a file from a clone of its repository
(``git show COMMIT:PATH > CACHE/NAME``); a benchmark that needs a missing file stops with one
line naming it and this command.

Nothing here is committed to this repository: the Stanford scans may be used for research but
not redistributed freely, and the meshes carry their authors' terms (see :data:`FILES`).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Source:
    """One file: ``path`` in the GitHub ``repo`` at ``commit``, its SHA-256, what it is and
    under which terms."""

    repo: str
    commit: str
    path: str
    sha256: str
    what: str
    license: str

    @property
    def url(self) -> str:
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.path}"


PCL = ("PointCloudLibrary/pcl", "1fdb03883eab28f642e938d9bf4d317903212cb4")
STANFORD = ("danimodesti/alglin_icp_files", "c340cda257a8beba1b588c7fd92aeca9711ab496")
MODELS = ("alecjacobson/common-3d-test-models", "8a4f8642acaf43f9cd7b67858a1502e1055ef202")
STANFORD_TERMS = (
    "Stanford 3D Scanning Repository (graphics.stanford.edu/data/3Dscanrep): free for research "
    "with acknowledgement, not for commercial use without permission"
)

#: cache name -> where it comes from
FILES = {
    "bun000.ply": Source(
        *STANFORD,
        "bun000.ply",
        "41d3662ce48f055e254806ea699edb71a06afde88876d37e2cece8e496dcb12b",
        "Stanford bunny, raw Cyberware range scan at 0 degrees: 40,256 points and the scan's "
        "own triangles, the PLY header stripped (a mirror of the repository's bunny/data)",
        STANFORD_TERMS,
    ),
    "bun045.ply": Source(
        *STANFORD,
        "bun045.ply",
        "960756d05262231c5fb372a5003475b0282b90800f562deb4d60282b0db336cd",
        "the same scanner at 45 degrees, in its own frame (pose from the repository's bun.conf)",
        STANFORD_TERMS,
    ),
    "milk.pcd": Source(
        *PCL,
        "test/milk.pcd",
        "a9eb086e321f7dcf03c43da8148b3d25e09119d83aaaeafa9cb23d835e64b766",
        "a milk carton seen once by a depth camera (13,704 points, the camera's frame), cut "
        "from the table scene of PCL's test data",
        "BSD-3-Clause (the Point Cloud Library)",
    ),
    "cheburashka.obj": Source(
        *MODELS,
        "data/cheburashka.obj",
        "b2ac59bc1112f1b3e086ac0285d9be7fdefef278a32151a79e650414b2244f3f",
        "Cheburashka, closed, 13,334 triangles (Ilya Baran)",
        "research test model; no licence stated in the collection",
    ),
    "homer.obj": Source(
        *MODELS,
        "data/homer.obj",
        "b20b1391fd62964f65703d748514d86d747d1202d38e55e0f1addac7a5a10e8b",
        "Homer, closed, 12,000 triangles (source unknown, via Pierre Alliez)",
        "research test model; no licence stated in the collection",
    ),
    "rocker-arm.obj": Source(
        *MODELS,
        "data/rocker-arm.obj",
        "590257e6d01e689354821d807854306c3bfbb02d9cca73404d5a4924f105c287",
        "rocker arm, a CAD part with a hole through it (genus 1), 20,088 triangles (INRIA, "
        "AIM@SHAPE)",
        "AIM@SHAPE repository terms (research use)",
    ),
    "cow.obj": Source(
        *MODELS,
        "data/cow.obj",
        "69afce548640bc2beb0c44894d1a24d5766cc9cd3fd74f3ec55b4e229104b23f",
        "cow, closed, 5,804 triangles (Viewpoint Animation Engineering / Sun Microsystems)",
        "free for research (Princeton suggestive-contours model page)",
    ),
}


class MissingData(RuntimeError):
    """A file the benchmark needs is not in the cache."""


def cache_dir() -> Path:
    return Path(os.environ.get("LIPSDF_BENCH_DATA") or Path.home() / ".cache" / "lipsdf-bench")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def data_path(name: str) -> Path:
    """The cached file ``name`` (a key of :data:`FILES`); :class:`MissingData` with what to
    run when it is absent."""
    path = cache_dir() / name
    if not path.is_file():
        raise MissingData(
            f"{name} is not in {cache_dir()}: run `python benchmarks/scan_data.py --fetch` "
            f"(needs {FILES[name].url}) or copy it there from a clone of {FILES[name].repo}"
        )
    return path


def fetch(names, timeout: float = 60.0) -> list[str]:
    """Download the missing ``names`` into the cache; returns one line per file that is still
    missing or wrong."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    problems = []
    for name in names:
        src, path = FILES[name], cache_dir() / name
        if not path.is_file():
            try:
                with urllib.request.urlopen(src.url, timeout=timeout) as response:
                    data = response.read()
            except OSError as exc:
                problems.append(f"{name}: could not download {src.url} ({exc})")
                continue
            path.write_bytes(data)
        if digest(path) != src.sha256:
            problems.append(f"{name}: SHA-256 differs from the pinned file; delete it and fetch")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fetch", action="store_true", help="download what is missing")
    args = p.parse_args(argv)
    problems = fetch(FILES) if args.fetch else []
    for name, src in FILES.items():
        path = cache_dir() / name
        state = "ok" if path.is_file() and digest(path) == src.sha256 else "MISSING or changed"
        print(f"{state:18} {name:16} {src.repo}@{src.commit[:8]}:{src.path}  ({src.license})")
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
