"""What a field is trained from: :class:`.geometry.Geometry` (mesh, points or curve arrays,
validated and hashed), point-cloud normals and areas (:mod:`.normals`), cloud preparation
(:mod:`.cloud`: outliers, noise, density) and small shapes made in code for tests and demos
(:mod:`.primitives`). numpy and scipy only; imports nothing of the core but its shared modules.
"""
