"""Build the Blender extension zip with Blender's own tool, then validate it.

    python scripts/build_extension.py [--out dist]

The manifest sits at the repository root and the add-on's code in ``lipsdf_blender/``, while
an extension zip wants both at its top level; so the package is staged in ``build/extension``
(with any wheel the manifest lists) and ``blender_ext.py build`` runs there. The tool ships
inside the ``bpy`` module (``bpy/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py``).
Prints the zip's path; exits non-zero when building or validating fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "lipsdf_blender"
MANIFEST = ROOT / "blender_manifest.toml"


def blender_ext_tool() -> Path:
    """The path of ``blender_ext.py`` inside the installed ``bpy`` module (not imported)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        sys.exit("build_extension: the bpy module is not installed (pip install bpy==5.0.1)")
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        sys.exit(f"build_extension: no blender_ext.py inside {Path(spec.origin).parent}")
    return found[-1]


def stage(dest: Path) -> dict:
    manifest = tomllib.loads(MANIFEST.read_text(encoding="utf-8"))
    version = re.search(r'__version__ = "([^"]+)"', (PACKAGE / "__init__.py").read_text())[1]
    if manifest["version"] != version:
        sys.exit(f"build_extension: manifest version {manifest['version']} != package {version}")
    shutil.rmtree(dest, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(PACKAGE, dest, ignore=ignore)
    shutil.copy2(MANIFEST, dest / MANIFEST.name)
    for wheel in manifest.get("wheels", []):
        src = (ROOT / wheel).resolve()
        target = dest / wheel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.exists():  # a missing one is left for blender_ext's build to refuse
            shutil.copy2(src, target)
    return manifest


def run(tool: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, str(tool), *args], capture_output=True, text=True)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "FATAL_ERROR" in out:
        sys.exit(f"build_extension: blender_ext {args[0]} failed:\n{out}")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "dist"), help="folder for the zip")
    parser.add_argument("--stage", default=str(ROOT / "build" / "extension"))
    args = parser.parse_args(argv)
    tool = blender_ext_tool()
    manifest = stage(Path(args.stage))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    zip_path = out / f"{manifest['id']}-{manifest['version']}.zip"
    zip_path.unlink(missing_ok=True)
    run(tool, "build", "--source-dir", args.stage, "--output-filepath", str(zip_path))
    if not zip_path.exists():
        sys.exit(f"build_extension: blender_ext build made no {zip_path}")
    run(tool, "validate", str(zip_path))
    print(zip_path)
    return zip_path


if __name__ == "__main__":
    main()
