"""nbinfer over HTTP: an OpenAI- and SGLang-compatible server for an in-process engine
(`serve_in_thread`, `create_app`, `nbinfer serve`), and a client that drives a remote server as an
`LLM` does (`RemoteLLM`). Needs the `server` extra: pip install 'nbinfer[server]'."""
from __future__ import annotations

__all__ = ["serve_in_thread", "RunningServer", "create_app", "RemoteLLM", "RemoteCapabilities"]


def __getattr__(name: str):
    # imported on use: the client needs only httpx, the server needs FastAPI + uvicorn
    if name in ("serve_in_thread", "RunningServer"):
        from . import serve
        return getattr(serve, name)
    if name == "create_app":
        from .app import create_app
        return create_app
    if name in ("RemoteLLM", "RemoteCapabilities"):
        from . import client
        return getattr(client, name)
    raise AttributeError(f"module 'nbinfer.server' has no attribute {name!r}")
