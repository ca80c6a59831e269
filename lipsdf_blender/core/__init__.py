"""LipSDF core engine: numpy + torch + libigl, never bpy.

Geometry in, 1-Lipschitz neural distance fields out, and surfaces back from them. The
sub-packages follow the pipeline, each importing only those before it:

- :mod:`.formats` reads files into geometry and writes meshes (one module per format);
- :mod:`.inputs` checks geometry and prepares point clouds (normals, noise, outliers);
- :mod:`.fields` is the distance field itself: the Lipschitz network, the ``.lipsdf`` file,
  the input's exact distances, queries and CSG;
- :mod:`.training` labels samples and trains a field (presets and defaults in
  :mod:`.training.presets`);
- :mod:`.surfaces` extracts meshes from fields: remesh, offsets, CSG surfaces, topology;
- :mod:`.tools` are what a field allows beyond surfaces: walls, slices, pictures, grids.

The modules at this level are shared by all of them: errors, array types, the device, and
the CPU threads.
"""
