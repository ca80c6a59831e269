"""LipSDF: 1-Lipschitz neural distance fields for Blender.

This package is imported in two kinds of process: inside Blender (where ``bpy`` exists and the
add-on registers its classes) and in the worker or the command line (no ``bpy``). Importing it
must never fail or register anything when ``bpy`` is absent: the Blender layer is imported only
by :func:`register`.
"""

import sys

__version__ = "0.1.0"
#: The same, by a public name for the modules that report it (the worker's handshake).
VERSION = __version__

#: The name scripts import the add-on by, whatever Blender calls the installed package
#: (an extension is ``bl_ext.<repository>.lipsdf_blender``).
PUBLIC_NAME = "lipsdf_blender"


def register() -> None:
    """Blender's entry point: register the operators, panel, menu and preferences."""
    from . import blender

    blender.register()
    _publish()


def unregister() -> None:
    from . import blender

    _unpublish()
    blender.unregister()


def _publish() -> None:
    # Let ``from lipsdf_blender import api`` work in scripts when Blender installed the add-on
    # as an extension under another package name. A package of that name imported from
    # elsewhere (a development checkout) is left alone.
    if __name__ == PUBLIC_NAME or PUBLIC_NAME in sys.modules:
        return
    from . import api  # noqa: F401 - imported so that it is published below

    # Every loaded submodule too: importing one under the public name must give the same
    # module object (one set of registered classes, one running job), not a second copy.
    prefix = __name__ + "."
    for name, module in list(sys.modules.items()):
        if name == __name__ or name.startswith(prefix):
            sys.modules[PUBLIC_NAME + name[len(__name__) :]] = module


def _unpublish() -> None:
    if __name__ == PUBLIC_NAME or sys.modules.get(PUBLIC_NAME) is not sys.modules[__name__]:
        return
    for name in [n for n in sys.modules if n == PUBLIC_NAME or n.startswith(PUBLIC_NAME + ".")]:
        del sys.modules[name]
