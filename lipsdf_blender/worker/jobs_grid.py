"""The hand-over to voxel grids: a field's narrow band on a grid (for OpenVDB level sets).

A mixin of :class:`.server.Server` (see :mod:`.jobs_surface`). The worker writes arrays only;
the add-on writes the ``.vdb`` with the ``openvdb`` module of Blender's own Python.
"""

from __future__ import annotations


class GridJobs:
    pass
