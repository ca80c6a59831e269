"""Command line: ``python -m lipsdf_blender train|remesh|offset|csg|points|hollow|slice|render|
batch|info ...`` (no Blender needed).

A user error is one line on stderr and exit status 2; the progress bar goes to stderr too, so
stdout carries only results. :mod:`.main` dispatches, :mod:`.parser` holds the arguments (and
imports nothing heavy, so ``--help`` is instant), :mod:`.surfaces` the commands that make
surfaces (train, remesh, offset, csg), :mod:`.tools` the field tools (points, hollow, info,
slice, render), :mod:`.progress` the terminal progress bar. Imports the core and the batch
package; never bpy.
"""
