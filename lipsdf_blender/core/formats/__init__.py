"""File formats: geometry files read into :class:`~..inputs.geometry.Geometry`, meshes and
points written out.

:mod:`.files` is the entry (``load_geometry``, ``save_mesh``, ``save_points``,
``save_obj_objects``) and picks the format by extension; each format family has its own
module (:mod:`.obj`, :mod:`.ply`, :mod:`.stl`, :mod:`.off`, :mod:`.xyz`, :mod:`.scene` through
trimesh), sharing :mod:`.text`. numpy only, except :mod:`.scene`, which imports trimesh when a
scene is read. Imports :mod:`..inputs.geometry` and :mod:`..errors`; the worker and the add-on
never read files.
"""
