"""PLACEHOLDER for the Jupyter session module (issue 4 writes the real one; take that one at merge).

Only the subset %%sgl uses, with the same names and meanings: the kernel's one engine.
"""
from __future__ import annotations

import threading

_lock = threading.RLock()
_llm = None


class NoModelLoaded(RuntimeError):
    def __init__(self):
        super().__init__("no model is loaded; run `%nbinfer load [MODEL]` first")


def current_llm():
    """The loaded LLM, or None. Never loads anything."""
    return _llm


def get_llm(autoload: bool = True):
    """The loaded LLM; with autoload the bundled default model is loaded if none is."""
    global _llm
    with _lock:
        if _llm is not None:
            return _llm
        if not autoload:
            raise NoModelLoaded()
        from nbinfer import LLM
        _llm = LLM()
        return _llm


def set_llm(llm) -> None:
    global _llm
    with _lock:
        _llm = llm
