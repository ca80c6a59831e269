"""The command line's entry: parse, dispatch to a command, turn errors into one line."""

from __future__ import annotations

import sys

from .parser import build_parser
from .progress import ProgressBar


def run(argv=None) -> int:
    """Run one command; user errors raise :class:`~..core.errors.LipSDFError`."""
    args = build_parser().parse_args(argv)
    if args.command == "batch":
        from ..batch.runner import run_batch

        return run_batch(args)
    from ..core.threads import FairShare, fair_share_wanted
    from . import surfaces, tools

    commands = {
        "train": surfaces.train,
        "remesh": surfaces.remesh,
        "offset": surfaces.offset,
        "csg": surfaces.csg,
        "points": tools.points,
        "hollow": tools.hollow_shell,
        "info": tools.info,
        "slice": tools.slice_plane,
        "render": tools.render,
    }
    bar = ProgressBar()
    share = FairShare() if fair_share_wanted() else None
    commands[args.command](args, bar, share)
    return 0


def main(argv=None) -> int:
    """Entry point; returns the exit status."""
    from ..core.errors import CancelledError, LipSDFError

    try:
        return run(argv)
    except KeyboardInterrupt:
        print("\nlipsdf: interrupted", file=sys.stderr)
        return 130
    except CancelledError as exc:
        print(f"lipsdf: cancelled: {exc}", file=sys.stderr)
        return 130
    except LipSDFError as exc:
        print(f"lipsdf: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"lipsdf: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 2
