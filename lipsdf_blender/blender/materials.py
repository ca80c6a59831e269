"""Images, planes and materials the field tools hand back: the thickness colour ramp, the
slice pictures and the sphere-traced preview."""

from __future__ import annotations

import bpy
import numpy as np

from .convert import result_collection

THICKNESS_MATERIAL = "LipSDF Thickness"
#: The ramp of the thickness colours: (position, RGBA) with the position in units of the
#: minimum wall (red below it, yellow at it, green from twice it).
RAMP = (
    (0.0, (0.85, 0.05, 0.03, 1.0)),
    (0.5, (0.95, 0.8, 0.05, 1.0)),
    (1.0, (0.1, 0.7, 0.2, 1.0)),
)


def thickness_colors(thickness, min_wall: float) -> np.ndarray:
    """``(n, 4)`` RGBA of the thickness ramp (the material's, for a colour attribute that the
    Workbench and vertex paint show); the position is ``thickness / (2 min_wall)``."""
    t = np.asarray(thickness, dtype=np.float64)
    x = np.clip(np.nan_to_num(t / max(2.0 * min_wall, 1e-12), nan=1.0, posinf=1.0), 0.0, 1.0)
    stops = np.array([p for p, _ in RAMP])
    colors = np.array([c for _, c in RAMP])
    return np.stack([np.interp(x, stops, colors[:, k]) for k in range(4)], axis=1)


def new_material(name: str):
    """A new material with its node tree (Principled BSDF and output). Blender 5.0 and later
    always give one and deprecate ``use_nodes`` (a console warning; gone in 6.0); before 5.0
    the tree comes only when asked."""
    mat = bpy.data.materials.new(name)
    if mat.node_tree is None:
        mat.use_nodes = True
    return mat


def thickness_material(attribute: str, min_wall: float):
    """The material that colours ``attribute`` (a wall thickness) by :data:`RAMP`; made once,
    its range updated on later runs."""
    mat = bpy.data.materials.get(THICKNESS_MATERIAL)
    if mat is None:
        mat = new_material(THICKNESS_MATERIAL)
        nt = mat.node_tree
        bsdf = next(n for n in nt.nodes if n.type == "BSDF_PRINCIPLED")
        attr = nt.nodes.new("ShaderNodeAttribute")
        attr.name = "thickness"
        rng = nt.nodes.new("ShaderNodeMapRange")
        rng.name = "range"
        ramp = nt.nodes.new("ShaderNodeValToRGB")
        elements = ramp.color_ramp.elements
        while len(elements) < len(RAMP):
            elements.new(0.5)
        for el, (pos, color) in zip(elements, RAMP, strict=True):
            el.position, el.color = pos, color
        nt.links.new(attr.outputs["Fac"], rng.inputs["Value"])
        nt.links.new(rng.outputs["Result"], ramp.inputs["Fac"])
        nt.links.new(ramp.outputs["Color"], bsdf.inputs["Base Color"])
        attr.location, rng.location, ramp.location = (-800, 300), (-600, 300), (-400, 300)
    nodes = mat.node_tree.nodes
    nodes["thickness"].attribute_name = attribute
    nodes["range"].inputs["From Min"].default_value = 0.0
    nodes["range"].inputs["From Max"].default_value = max(2.0 * min_wall, 1e-9)
    mat.diffuse_color = RAMP[-1][1]
    return mat


def show_material(obj, mat) -> None:
    """Give every material slot of ``obj`` the material (linked to the object, so the mesh's
    own materials stay as they were); an object without slots gets one."""
    if not obj.material_slots:
        obj.data.materials.append(None)
    for slot in obj.material_slots:
        slot.link = "OBJECT"
        slot.material = mat


def image_from_rgba(name: str, rgba, replace: bool = False):
    """An Image datablock of ``rgba`` ``(h, w, 4)`` (row 0 at the bottom, as Blender stores
    pixels), packed into the .blend. ``replace`` reuses an image of that name (the preview)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.float32)
    h, w = rgba.shape[:2]
    img = bpy.data.images.get(name) if replace else None
    if img is not None and tuple(img.size) != (w, h):
        img.scale(w, h)
    if img is None:
        img = bpy.data.images.new(name, w, h, alpha=True)
    img.pixels.foreach_set(rgba.ravel())
    img.update()
    img.pack()
    return img


def image_material(name: str, image):
    """A material that shows ``image`` as it is (emission) on a plane's UVs."""
    mat = new_material(name)
    nt = mat.node_tree
    for node in list(nt.nodes):
        if node.type != "OUTPUT_MATERIAL":
            nt.nodes.remove(node)
    out = next(n for n in nt.nodes if n.type == "OUTPUT_MATERIAL")
    tex = nt.nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.interpolation = "Closest"
    emit = nt.nodes.new("ShaderNodeEmission")
    nt.links.new(tex.outputs["Color"], emit.inputs["Color"])
    nt.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    nt.nodes.active = tex  # the Workbench's Texture colour shows the active image node
    tex.location, emit.location = (-500, 0), (-200, 0)
    return mat


def new_plane_object(context, name: str, matrix, half_w: float, half_h: float, material):
    """A rectangle ``[-half_w, half_w] x [-half_h, half_h]`` in its XY plane, UVs over the
    whole image, placed by ``matrix`` (4x4) in the LipSDF collection."""
    me = bpy.data.meshes.new(name)
    V = np.array(
        [[-half_w, -half_h, 0], [half_w, -half_h, 0], [half_w, half_h, 0], [-half_w, half_h, 0]],
        dtype=np.float32,
    )
    me.from_pydata(V.tolist(), [], [(0, 1, 2, 3)])
    uv = me.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", np.array([0, 0, 1, 0, 1, 1, 0, 1], dtype=np.float32))
    me.materials.append(material)
    obj = bpy.data.objects.new(name, me)
    obj.matrix_world = matrix
    result_collection(context).objects.link(obj)
    return obj
