"""nbinfer's IPython extension: `%load_ext nbinfer` registers %nbinfer and %%generate (and %%sgl
when the SGL layer is installed). Nothing here is imported until the extension loads, so
`import nbinfer` never imports IPython."""
from __future__ import annotations

import importlib

# optional parts of nbinfer that add magics of their own: module -> its register(ipython)
OPTIONAL_MAGICS = ("nbinfer.jupyter.sgl_magic",)


def load_ipython_extension(ipython) -> None:
    """Register the magics. Prints nothing (loading the extension twice is harmless)."""
    from . import commands
    from .magics import NbinferMagics

    for name in commands.PLUGINS:           # e.g. `%nbinfer bench`, registered by its own module
        _try_import(name)
    ipython.register_magics(NbinferMagics)
    commands.refresh_help()
    for name in OPTIONAL_MAGICS:
        module = _try_import(name)
        if module is not None and hasattr(module, "register"):
            module.register(ipython)


def unload_ipython_extension(ipython) -> None:
    """Stop the dashboard publisher; the loaded model stays (use `%nbinfer unload` to free it)."""
    import sys
    if "nbinfer.jupyter.dashboard" in sys.modules:
        sys.modules["nbinfer.jupyter.dashboard"].close_dashboard()


def _try_import(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and (name == e.name or name.startswith(e.name + ".")):
            return None                     # that part of nbinfer is not there: fine
        raise                               # it is there but one of its imports is missing: say so
