"""Where an SGL program's gen / select requests go.

base.py (the Backend interface and the registry of kinds), engine.py (an in-process nbinfer.LLM),
default.py (which backend a run uses: explicit, default, fallback), runtime.py (sgl.Runtime).
"""
from .base import Backend, GenResult, TokenLogprob, as_backend, backend_kinds, register_backend
from .default import (flush_cache, get_default_backend, get_server_info, register_fallback_backend,
                      resolve_backend, set_default_backend)
from .engine import EngineBackend
from .runtime import Runtime, SGLModel

__all__ = ["Backend", "GenResult", "TokenLogprob", "as_backend", "backend_kinds", "register_backend",
           "flush_cache", "get_default_backend", "get_server_info", "register_fallback_backend",
           "resolve_backend", "set_default_backend", "EngineBackend", "Runtime", "SGLModel"]
