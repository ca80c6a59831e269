"""The worker: a separate process that runs core jobs (torch, libigl) for Blender.

Blender imports only :mod:`.client` and :mod:`.protocol`, and the add-on's setup
:mod:`.environment`: these import neither torch nor bpy. The worker process runs
``python -m lipsdf_blender.worker`` (:mod:`.__main__`): :mod:`.server` is its loop (threads,
requests, dispatch, errors as messages), :mod:`.jobs` the job families with their table of
handlers, :mod:`.running` what a running job works with (the job, the field and exact-surface
caches, the out-of-memory fall-backs), :mod:`.params` the checks of a request's params,
:mod:`.remote` the forwarding to a Ray cluster and :mod:`.cluster` the one module that imports
Ray. Everything here may import the core, never bpy; nothing imports the server but
``__main__`` and the Ray actor in :mod:`.remote`.
"""
