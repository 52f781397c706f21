"""Where an SGL program's gen / select requests go.

base.py (the Backend interface and the registry of kinds), handles.py (what backends built on
RequestHandles share), engine.py (an in-process nbinfer.LLM), remote.py (a remote server:
sgl.RuntimeEndpoint, sgl.OpenAI) with remote_template.py (its roles), default.py (which backend a run
uses: explicit, default, fallback), runtime.py (sgl.Runtime).
"""
from .base import Backend, GenResult, TokenLogprob, as_backend, backend_kinds, register_backend
from .default import (flush_cache, get_default_backend, get_server_info, register_fallback_backend,
                      resolve_backend, set_default_backend)
from .engine import EngineBackend
from .handles import HandleBackend
from .remote import OpenAI, RemoteBackend, RuntimeEndpoint
from .runtime import Runtime, SGLModel

__all__ = ["Backend", "GenResult", "TokenLogprob", "as_backend", "backend_kinds", "register_backend",
           "flush_cache", "get_default_backend", "get_server_info", "register_fallback_backend",
           "resolve_backend", "set_default_backend", "EngineBackend", "HandleBackend", "RemoteBackend",
           "RuntimeEndpoint", "OpenAI", "Runtime", "SGLModel"]
