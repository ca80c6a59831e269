"""The core never pulls in Blender, and the package imports cleanly without it."""

import subprocess
import sys


def test_core_and_cli_import_without_bpy():
    code = (
        "import importlib, pkgutil, sys\n"
        "import lipsdf_blender, lipsdf_blender.core, lipsdf_blender.cli.main\n"
        "import lipsdf_blender.cli.surfaces, lipsdf_blender.cli.tools\n"
        "for m in pkgutil.walk_packages(lipsdf_blender.core.__path__, 'lipsdf_blender.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'bpy' not in sys.modules, 'core imported bpy'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
