"""What each operator asks of the worker: its *plan*, one family per module (no bpy here).

The modules mirror :mod:`..operators`: ``build`` (train, remesh, offset, CSG), ``query``
(surface points, projection, distances), ``printing`` (wall thickness, hollow), ``pictures``
(slice, sphere-traced preview), ``exchange`` (an OpenVDB grid); the records they share
(:class:`~.common.Settings`, :class:`~.common.Source`, :class:`~.common.Outcome`) and the
training every plan starts with are in :mod:`.common`.

An operator turns the selected objects into ``Source`` records (plain arrays) and hands its
plan to a :class:`~lipsdf_blender.jobrunner.Job`. A plan is a generator: it yields worker
requests, receives each request's ``result`` message and finally returns an ``Outcome``
holding the trained field files (as bytes) and the results (meshes, arrays). Only after the
whole plan succeeded does the operator touch the scene, so a failed or cancelled job leaves
nothing half-made; the one exception is a :class:`~lipsdf_blender.jobrunner.Delivery`, a
result that is final before the plan ends (a closed mesh's remesh, before its training), which
the operator builds at once. Plans may import numpy, the core's light modules (errors, geometry,
presets), the worker's protocol and :mod:`lipsdf_blender.jobrunner`; never bpy, never torch.
"""
