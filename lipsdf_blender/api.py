"""A small scripting API over the LipSDF operators, for ``blender -b -P script.py``.

Every function runs the same operator that the sidebar and F3 run (so it makes one undo step
and never changes its inputs), blocks until the worker is done, prints progress lines, and
returns the new objects. A failure raises :class:`~lipsdf_blender.core.errors.LipSDFError`
with the operator's message.

>>> from lipsdf_blender import api
>>> monkey = bpy.data.objects["Suzanne"]
>>> shell = api.remesh(monkey, preset=DEFAULT_PRESET)
>>> outer, inner = api.offset(monkey, [0.05, -0.02])
>>> blob = api.csg([monkey, bpy.data.objects["Cube"]], "union", blend=0.1)

Keyword arguments of :func:`train`, :func:`remesh`, :func:`offset` and :func:`csg` are the
panel's settings (``mode``, ``thickness``, ``resolution``, ``seed``, ``detail``, ``sharp``,
``faces``, ``warm_start``: True (default) retrains an object edited since training from
its previous field) and, for point clouds, ``normals`` (``"auto"``: the cloud's own where it
has them, or ``"estimate"``) and ``noise`` (the points' noise in object units; ``None``:
estimated).
Any others are preset settings (``steps=500``, ``width=32``, ...), applied on top of
``preset``.

The field tools (:func:`surface_points`, :func:`project`, :func:`distance_attributes`,
:func:`thickness`, :func:`hollow`, :func:`slice_picture`, :func:`preview`,
:func:`sdf_volume`) train first when an object has no up-to-date field, like the panel.

>>> cloud = api.surface_points(monkey, 2000)
>>> api.distance_attributes([bpy.data.objects["Plane"]], monkey)
>>> shell = api.hollow(monkey, wall=0.05)

>>> scan = bpy.data.objects["scan"]  # File › Import › Stanford PLY, with normals
>>> shell = api.remesh(scan, normals="estimate", noise=0.002)
"""

from __future__ import annotations

import json

import bpy

from .blender import operators
from .core.errors import LipSDFError
from .core.training.presets import DEFAULT_PRESET

NORMALS = ("auto", "estimate")


def _split(kwargs: dict) -> tuple[dict, dict]:
    """``(operator settings, preset overrides)`` from a call's keyword arguments."""
    if "noise" in kwargs:  # noise=None / a number stands for the panel's Auto / Given
        noise = kwargs.pop("noise")
        if noise is None or noise == "auto":
            kwargs["noise_mode"] = "auto"
        else:
            number = isinstance(noise, int | float) and not isinstance(noise, bool)
            if not (number and 0 <= noise < float("inf")):
                raise LipSDFError(
                    f"noise must be a distance >= 0 in object units, or None to estimate it; "
                    f"got {noise!r}"
                )
            kwargs["noise_mode"], kwargs["noise"] = "given", float(noise)
    if kwargs.get("normals", "auto") not in NORMALS:
        raise LipSDFError(
            f"normals must be 'auto' (the cloud's own where it has them) or 'estimate'; "
            f"got {kwargs['normals']!r}"
        )
    settings = {k: kwargs.pop(k) for k in operators.SETTINGS_KEYS if k in kwargs}
    return settings, kwargs


def _run(op, objects, active=None, **props) -> list:
    """Run ``op`` on ``objects`` (``active`` first) and return the objects it made."""
    objects = list(objects)
    if not objects:
        raise LipSDFError("give at least one object")
    settings, overrides = _split(props.pop("extra"))
    props.update(settings)
    if overrides:
        props["overrides"] = json.dumps(overrides)
    if active is None:
        active = objects[0]
    elif active not in objects:
        objects.append(active)
    ctx = bpy.context
    with ctx.temp_override(
        active_object=active,
        object=active,
        selected_objects=objects,
        selected_editable_objects=objects,
    ):
        if not op.poll():
            raise LipSDFError(
                f"{op.idname_py()} cannot run now: a LipSDF job is running, or the objects "
                "are not meshes, curves or point clouds, or Blender is not in Object Mode"
            )
        try:
            result = op("EXEC_DEFAULT", **props)
        except RuntimeError as exc:  # an operator that reports an error raises in scripts
            raise LipSDFError(operators.last_error or str(exc)) from None
    if "FINISHED" not in result:
        raise LipSDFError(operators.last_error or f"{op.idname_py()} was cancelled")
    return [bpy.data.objects[name] for name in operators.last_results]


def train(objects, preset: str = DEFAULT_PRESET, **kwargs) -> None:
    """Train (or retrain) and store a field on each object."""
    if isinstance(objects, bpy.types.Object):
        objects = [objects]
    _run(bpy.ops.lipsdf.train, objects, preset=preset, extra=kwargs)


def remesh(obj, preset: str = DEFAULT_PRESET, **kwargs):
    """The zero level set of ``obj``'s field as a new object (training first if needed)."""
    return _run(bpy.ops.lipsdf.remesh, [obj], preset=preset, extra=kwargs)[0]


def offset(obj, distances, preset: str = DEFAULT_PRESET, exact: bool = True, **kwargs) -> list:
    """New objects at ``distances`` (object units; negative = inward), in the given order."""
    if isinstance(distances, int | float):
        distances = [distances]
    text = ", ".join(repr(float(d)) for d in distances)
    return _run(
        bpy.ops.lipsdf.offset, [obj], preset=preset, distances=text, exact=exact, extra=kwargs
    )


def csg(
    objects, operation: str = "union", blend: float = 0.0, preset: str = DEFAULT_PRESET, **kwargs
):
    """Combine ``objects`` in world space, ``objects[0]`` first; one new object.

    ``operation`` is ``union``, ``intersection`` or ``difference`` (the first minus the
    rest); ``blend`` > 0 makes it smooth with that radius (world units).
    """
    return _run(
        bpy.ops.lipsdf.csg,
        objects,
        preset=preset,
        operation=operation,
        smooth=blend > 0,
        blend=max(float(blend), 0.0),
        extra=kwargs,
    )[0]


def _list(objects) -> list:
    return [objects] if isinstance(objects, bpy.types.Object) else list(objects)


def surface_points(obj, count: int = 5000, level: float = 0.0, preset=DEFAULT_PRESET, **kwargs):
    """A new point cloud of ``count`` evenly spread points (``normal`` attribute) on the level
    set ``level`` (object units) of ``obj``'s field."""
    return _run(
        bpy.ops.lipsdf.surface_points, [obj], preset=preset, count=count, level=level,
        extra=kwargs,
    )[0]  # fmt: skip


def project(
    targets, field_obj, level: float = 0.0, result="OBJECT", preset=DEFAULT_PRESET, **kwargs
):
    """Copies of the ``targets`` meshes with their vertices on the level set ``level`` (world
    units) of ``field_obj``'s field; ``result`` ``"OBJECT"`` or ``"SHAPE_KEY"``."""
    return _run(
        bpy.ops.lipsdf.project, _list(targets), active=field_obj, preset=preset, level=level,
        result=result, extra=kwargs,
    )  # fmt: skip


def distance_attributes(targets, field_obj, exact: bool = True, preset=DEFAULT_PRESET, **kwargs):
    """Write ``lipsdf_distance`` (world units) and ``lipsdf_gradient`` (world space) on every
    vertex of the ``targets`` meshes: the signed distance to ``field_obj``."""
    _run(
        bpy.ops.lipsdf.distance_attributes, _list(targets), active=field_obj, preset=preset,
        exact=exact, extra=kwargs,
    )  # fmt: skip


def thickness(
    objects, min_wall: float = 0.02, exact=True, show=True, preset=DEFAULT_PRESET, **kwargs
):
    """Write the wall thickness ``lipsdf_thickness`` (object units) and its colour on every
    vertex of the meshes; ``show`` gives them the thickness material."""
    _run(
        bpy.ops.lipsdf.thickness, _list(objects), preset=preset, min_wall=min_wall, exact=exact,
        show=show, extra=kwargs,
    )  # fmt: skip


def hollow(obj, wall: float, preset: str = DEFAULT_PRESET, **kwargs):
    """A new closed shell of ``obj`` with walls ``wall`` thick (object units)."""
    return _run(bpy.ops.lipsdf.hollow, [obj], preset=preset, wall=wall, extra=kwargs)[0]


def slice_picture(
    obj, placement="Z", plane=None, pixels=512, spacing=0.05, preset=DEFAULT_PRESET, **kw
):
    """Two new planes through ``obj``'s field (distances, and ``|grad f|`` beside them):
    ``placement`` ``"X"``/``"Y"``/``"Z"`` through the 3D cursor, or ``"SELECTED"`` with
    ``plane`` (an object whose XY plane is used)."""
    objects = [obj] if plane is None else [obj, plane]
    return _run(
        bpy.ops.lipsdf.slice, objects, active=obj, preset=preset, placement=placement,
        pixels=pixels, spacing=spacing, extra=kw,
    )  # fmt: skip


def preview(objects, operation="union", blend=0.0, size=512, preset=DEFAULT_PRESET, **kwargs):
    """Sphere-trace the objects' fields (combined by ``operation``, the first one first) from
    the scene camera; returns the image "LipSDF Preview"."""
    from .blender.operators.pictures import PREVIEW_IMAGE

    _run(
        bpy.ops.lipsdf.preview, _list(objects), preset=preset, operation=operation,
        blend=blend, size=size, extra=kwargs,
    )  # fmt: skip
    return bpy.data.images[PREVIEW_IMAGE]


def sdf_volume(obj, voxel: float = 0.0, band: float = 3.0, exact=True, preset=DEFAULT_PRESET, **kw):
    """A new Volume object: ``obj``'s narrow band as an OpenVDB level set (grid "distance",
    ``voxel`` object units; 0: 1/200 of its size), for Blender's SDF grid nodes."""
    return _run(
        bpy.ops.lipsdf.sdf_volume, [obj], preset=preset, voxel=voxel, band=band, exact=exact,
        extra=kw,
    )[0]  # fmt: skip


def field_of(obj) -> bytes | None:
    """The ``.lipsdf`` file stored with ``obj`` (bytes), or ``None`` if it has none."""
    from .blender import fields

    return fields.field_bytes(obj) if fields.has_field(obj) else None
