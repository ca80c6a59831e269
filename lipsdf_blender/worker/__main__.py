"""``python -m lipsdf_blender.worker``: serve jobs on stdin/stdout (see :mod:`.protocol`)."""

import logging
import os
import sys


def main() -> int:
    # Keep the real stdout for the protocol alone: anything else that writes to fd 1 (a print,
    # a C library's chatter) goes to stderr instead, where the client keeps a log.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8", newline="\n", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    threads = os.environ.get("LIPSDF_WORKER_THREADS")
    import torch

    from ..core.threads import FairShare, fair_share_wanted

    if threads:
        torch.set_num_threads(int(threads))
    share = FairShare() if fair_share_wanted() else None
    from .remote import from_environment
    from .server import Server

    server = Server(sys.stdin.buffer, out, share=share)
    # Jobs go to a Ray cluster when the environment names one (see .remote).
    server.forwarder = from_environment(server)
    return server.serve()


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)
