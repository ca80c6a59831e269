"""Which objects an operator works on, read from the context's selection."""

from __future__ import annotations

from .. import convert


def supported_selected(context) -> list:
    """The selected objects LipSDF can train on (meshes, curves, point clouds)."""
    return [o for o in getattr(context, "selected_objects", None) or () if convert.supported(o)]


def active_first(context) -> list:
    """The active object, then the other supported selected ones by name (``[]`` when the
    active one is not supported): the operands of a CSG or a combined preview."""
    active = getattr(context, "active_object", None)
    if not convert.supported(active):
        return []
    others = sorted((o for o in supported_selected(context) if o != active), key=lambda o: o.name)
    return [active, *others]


def active_supported(context) -> list:
    """``[active object]`` when LipSDF can train on it, else ``[]``."""
    active = getattr(context, "active_object", None)
    return [active] if convert.supported(active) else []


def other_selected(context, types=("MESH",)) -> list:
    """The selected objects other than the active one, of ``types``, by name."""
    active = getattr(context, "active_object", None)
    objs = getattr(context, "selected_objects", None) or ()
    return sorted((o for o in objs if o != active and o.type in types), key=lambda o: o.name)
