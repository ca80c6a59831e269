"""Batches of shapes: ``python -m lipsdf_blender batch`` (local worker processes or Ray).

:mod:`.shape` is one shape's job, :mod:`.runner` the local runner and the results table,
:mod:`.ray_tasks` the same jobs as Ray tasks. Nothing here is imported by Blender's process.
"""
