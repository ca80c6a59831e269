"""The distance field: everything that follows the :class:`.sdf.DistanceField` protocol.

:mod:`.network` holds the 1-Lipschitz SLL layers, :mod:`.field` the trained
:class:`~.field.Field` and its ``.lipsdf`` file, :mod:`.detail` the input's exact distances
(the surface a remesh is extracted from), :mod:`.query` values, gradients and projection,
:mod:`.csg` and :mod:`.transform` combinations and placements. Imports :mod:`..inputs` and the
shared modules; never training or surfaces.
"""
