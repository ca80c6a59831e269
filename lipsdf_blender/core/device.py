"""Choosing the torch device a job runs on."""

from __future__ import annotations

import torch

from .errors import BadInputError

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """Return the device for ``name``: ``auto`` takes CUDA, then Apple MPS, then the CPU.

    A forced device that is not present is a :class:`BadInputError` that says what is there.
    """
    if name not in DEVICES:
        raise BadInputError(f"unknown device {name!r}; choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"no CUDA device is available here; {describe_why_cpu()}")
    if name == "mps" and not _mps_available():
        raise BadInputError("no Apple MPS device is available here; use --device cpu or auto")
    return torch.device(name)


def describe_why_cpu() -> str:
    """One line saying why no GPU is used (for the handshake and error messages)."""
    if torch.version.cuda is None and not _mps_available():
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if torch.version.cuda is not None and not torch.cuda.is_available():
        return f"torch {torch.__version__} has CUDA {torch.version.cuda} but finds no GPU/driver"
    return "no GPU was found"


def describe(device: torch.device) -> str:
    """A human-readable name: the GPU's name and memory, ``Apple MPS`` or ``CPU (n threads)``."""
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{p.name} ({p.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple MPS"
    return f"CPU ({torch.get_num_threads()} threads)"
