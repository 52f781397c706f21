"""The kernel's one engine: who holds it, how it is loaded, swapped and freed.

Every Jupyter entry point (%nbinfer, %%generate, %%sgl, the dashboard) obtains the engine here, so
`%nbinfer unload` then `%nbinfer load OTHER` swaps it for all of them without a kernel restart.

Policy: `get_llm()` auto-loads the default model when nothing is loaded (with a one-line notice), so a
fresh notebook can run `%%generate` straight away; `%nbinfer load MODEL` replaces it. The default is
smollm2-135m-instruct (fetched once, then cached), or $NBINFER_DEFAULT_MODEL; when it cannot be
fetched, the bundled story model, said in one line (nbinfer/models/default_model.py).
Code that must not load anything (the dashboard, status) uses `current_llm()`, which may be None.

`%nbinfer connect URL` points the cells at a remote server instead (a RemoteLLM): `get_target()` and
`current_target()` are what %%generate, %%sgl and the dashboard use, the remote while one is
connected, else the local engine. The local engine stays loaded meanwhile (and can still be served).
"""
from __future__ import annotations

import threading
from typing import Callable

from ..models.default_model import default_model_name, interactive_default_model
from ..models.named import BUNDLED

_lock = threading.RLock()
_llm = None
_remote = None          # a RemoteLLM while connected
_listeners: list[Callable[[object | None], None]] = []


class NoModelLoaded(RuntimeError):
    """Raised by get_llm(autoload=False) when no engine is loaded."""

    def __init__(self):
        super().__init__("no model is loaded; run `%nbinfer load [MODEL]` first")


def current_llm():
    """The loaded LLM, or None. Never loads anything."""
    return _llm


def get_llm(autoload: bool = True):
    """The loaded LLM; with autoload (the default) the default model is loaded if none is."""
    with _lock:
        if _llm is not None:
            return _llm
        if not autoload:
            raise NoModelLoaded()
        name = default_model_name()
        shown = "the bundled default model" if name == BUNDLED else name
        print(f"nbinfer: no model loaded yet; loading {shown} (`%nbinfer load MODEL` picks another)")
        return load_llm()


def set_llm(llm) -> None:
    """Make `llm` the session's engine (shutting down the previous one if it is a different object)."""
    global _llm
    with _lock:
        old = _llm
        _llm = llm
    if old is not None and old is not llm:
        old.shutdown()
    _notify(current_target())


def load_llm(model: str | None = None, **engine_kwargs):
    """Unload whatever is loaded, then load `model` (None = the default model) as the session engine.

    The old engine is shut down *before* the new one is built, so two models never share the device.
    """
    from ..llm import LLM

    with _lock:
        unload_llm()
        if model is None:
            model = interactive_default_model()     # None again: the bundled model
        llm = LLM(model=model, **engine_kwargs)
        set_llm(llm)
        return llm


def unload_llm() -> str | None:
    """Shut the engine down (weights and KV freed); returns a description of what was unloaded."""
    global _llm
    with _lock:
        llm, _llm = _llm, None
    if llm is None:
        return None
    described = describe(llm)
    llm.shutdown()
    _notify(current_target())
    return described


def describe(llm) -> str:
    try:
        s = llm.stats()
    except Exception:
        return repr(llm)
    return f"{s.model} ({s.dtype}, {s.device})"


def current_remote():
    """The connected RemoteLLM, or None."""
    return _remote


def current_target():
    """What cells run on now: the connected remote, else the loaded LLM, else None. Never loads."""
    return _remote if _remote is not None else _llm


def get_target(autoload: bool = True):
    """What cells run on now: the connected remote, else the local engine (loaded if need be)."""
    remote = _remote
    return remote if remote is not None else get_llm(autoload)


def connect(remote) -> None:
    """Make `remote` (a RemoteLLM) what cells run on; a previous connection is closed."""
    global _remote
    with _lock:
        old, _remote = _remote, remote
    if old is not None and old is not remote:
        old.close()
    _notify(current_target())


def disconnect():
    """Return the cells to the local engine; returns the closed RemoteLLM (None if none was connected)."""
    global _remote
    with _lock:
        old, _remote = _remote, None
    if old is None:
        return None
    old.close()
    _notify(current_target())
    return old


def add_listener(fn: Callable[[object | None], None]) -> None:
    """fn(target_or_None) is called after every load/unload/connect/disconnect (the dashboard resets
    its history); the argument is what cells run on after the change (current_target())."""
    _listeners.append(fn)


def remove_listener(fn) -> None:
    if fn in _listeners:
        _listeners.remove(fn)


def _notify(llm) -> None:
    for fn in list(_listeners):
        try:
            fn(llm)
        except Exception:   # a broken listener must not break loading
            pass

