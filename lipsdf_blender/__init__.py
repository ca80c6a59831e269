"""LipSDF: 1-Lipschitz neural distance fields for Blender.

This package is imported in two kinds of process: inside Blender (where ``bpy`` exists and the
add-on registers its classes) and in the worker or the command line (no ``bpy``). Importing it
must never fail or register anything when ``bpy`` is absent.
"""

__version__ = "0.1.0"
