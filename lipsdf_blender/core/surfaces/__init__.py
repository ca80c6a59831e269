"""Meshes from fields. :mod:`.extract` is Lipschitz-pruned sparse marching cubes (with the
cube tables in :mod:`.cube` and dual contouring in :mod:`.contour`); :mod:`.remesh` makes every
surface a user gets (remesh, offsets, CSG) through the exact distance of :mod:`.mesh_distance`;
:mod:`.simplify` decimates, :mod:`.topology` checks closedness and parts, :mod:`.metrics`
measures one surface against another. Imports :mod:`..fields` and the shared modules.
"""
