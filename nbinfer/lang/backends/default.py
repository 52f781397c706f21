"""Which backend a program runs on: run(backend=...), else the default backend
(sgl.set_default_backend), else the first registered fallback that has one (the notebook's engine:
the Jupyter layer registers it, so the language never looks for Jupyter)."""
from __future__ import annotations

import threading
from typing import Callable

from ..errors import SglError
from .base import Backend, as_backend

_default: Backend | None = None
_fallbacks: list[Callable[[], object]] = []
_lock = threading.Lock()


def set_default_backend(backend) -> None:
    """Programs run on this backend unless run(backend=...) says otherwise."""
    global _default
    backend = None if backend is None else as_backend(backend)
    with _lock:
        _default = backend


def get_default_backend() -> Backend | None:
    return _default


def drop_default_backend(backend: Backend) -> None:
    """Forget `backend` as the default if it is (its engine is being shut down)."""
    global _default
    with _lock:
        if _default is backend:
            _default = None


def register_fallback_backend(provider: Callable[[], object]) -> None:
    """provider() returns what programs run on when neither run(backend=...) nor the default backend
    names one: a Backend (or anything set_default_backend accepts), or None when it has none right now.
    It is asked at each run and must not load anything. Registering the same provider again is a no-op."""
    with _lock:
        if provider not in _fallbacks:
            _fallbacks.append(provider)


def _fallback() -> Backend | None:
    for provider in list(_fallbacks):
        found = provider()
        if found is not None:
            return as_backend(found)
    return None


def resolve_backend(explicit=None) -> Backend:
    """run(backend=...) > the default backend > a fallback (the notebook's engine)."""
    if explicit is not None:
        return as_backend(explicit)
    backend = _default if _default is not None else _fallback()
    if backend is None:
        raise SglError("no model to run the program on: load one (`%nbinfer load` in a notebook, or "
                       "sgl.set_default_backend(sgl.Runtime(model_path=...))), or pass run(backend=...)")
    return backend


def flush_cache(backend=None) -> bool:
    try:
        b = resolve_backend(backend)
    except SglError:
        return False
    b.flush_cache()
    return True


def get_server_info(backend=None) -> dict | None:
    try:
        b = resolve_backend(backend)
    except SglError:
        return None
    return b.server_info()
