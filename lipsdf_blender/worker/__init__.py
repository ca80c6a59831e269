"""The worker: a separate process that runs core jobs (torch, libigl) for Blender.

Blender imports only :mod:`.client` and :mod:`.protocol` (no torch); the worker process runs
``python -m lipsdf_blender.worker`` (:mod:`.server`). Nothing here imports bpy.
"""
