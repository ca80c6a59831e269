"""Exceptions raised by the core engine.

Every message says what was wrong and what the user can do about it; the CLI prints it as
one line and the Blender operators show it with ``self.report({'ERROR'}, ...)``.
"""

from __future__ import annotations


class LipSDFError(Exception):
    """Base class of every error the engine raises on purpose."""


class BadInputError(LipSDFError):
    """The geometry or a parameter cannot be used (empty, NaN, wrong shape, unknown format)."""


class FieldFileError(LipSDFError):
    """A ``.lipsdf`` file is missing, truncated, tampered with or of an unknown version."""


class CancelledError(LipSDFError):
    """A job was stopped by its cancel hook."""
