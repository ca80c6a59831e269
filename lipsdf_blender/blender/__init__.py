"""The Blender side of LipSDF: operators, panel, menu, preferences, mesh <-> numpy.

Everything here runs inside Blender and never imports torch; the heavy work runs in the worker
process (``lipsdf_blender.worker``). Each operator's plan (:mod:`.plans`, no ``bpy``) says
what it asks of the worker, and :mod:`lipsdf_blender.jobrunner` (outside this package: no
Blender code) runs it; so this file imports the Blender modules only when the add-on registers.
"""

from __future__ import annotations


def _modules():
    from . import operators, prefs, props, ui

    return (props, prefs, operators, ui)


def register() -> None:
    import bpy

    from . import fields, operators, props, ui

    for module in _modules():
        for cls in module.classes:
            bpy.utils.register_class(cls)
    props.register()
    fields.register()
    operators.register()
    ui.register()


def unregister() -> None:
    import bpy

    from . import fields, operators, prefs, props, ui

    ui.unregister()
    operators.unregister()
    fields.unregister()
    prefs.shutdown_worker()
    props.unregister()
    for module in reversed(_modules()):
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
