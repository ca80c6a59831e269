"""LipSDF core engine: numpy + torch + libigl, never bpy.

Geometry in, 1-Lipschitz neural distance fields out, and surfaces back from them.
"""
