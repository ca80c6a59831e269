"""Jobs that make pictures of fields: a slice through a field, a sphere-traced preview.

A mixin of :class:`.server.Server` (see :mod:`.jobs_surface`).
"""

from __future__ import annotations


class PictureJobs:
    pass
