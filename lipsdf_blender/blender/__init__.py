"""The Blender side of LipSDF: operators, panel, menu, preferences, mesh <-> numpy.

Imported only inside Blender (it needs ``bpy``); it never imports torch. The heavy work runs
in the worker process (``lipsdf_blender.worker``), which this layer drives through
:mod:`.jobs`.
"""

from __future__ import annotations

import bpy

from . import fields, operators, prefs, props, ui

_MODULES = (props, prefs, operators, ui)


def register() -> None:
    for module in _MODULES:
        for cls in module.classes:
            bpy.utils.register_class(cls)
    props.register()
    fields.register()
    operators.register()
    ui.register()


def unregister() -> None:
    ui.unregister()
    fields.unregister()
    operators.unregister()
    prefs.shutdown_worker()
    props.unregister()
    for module in reversed(_MODULES):
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
