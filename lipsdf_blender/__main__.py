"""``python -m lipsdf_blender``: the command-line interface."""

import sys

from lipsdf_blender.cli.main import main

sys.exit(main())
