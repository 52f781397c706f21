"""The notebook's own engine served over HTTP (`%nbinfer serve`): nbinfer's server (OpenAI + SGLang
APIs) on a background thread, next to the cells, which keep using the same engine. Its requests show
in the dashboard tagged with origin "server".

What happens when the engine changes under it:
- `%nbinfer unload` stops the server before the engine shuts down (clients then get a refused
  connection, never an answer from a half-freed engine);
- `%nbinfer load OTHER` moves it to the new engine at the same URL and API key (the socket is
  closed while the model loads, and reopened on the same port; if loading fails it stays stopped
  and the load's message says so);
- any other change of engine (session.set_llm from code) stops it;
- `%nbinfer connect` leaves it running: the local engine is still served while cells use the remote.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from . import session


@dataclass(frozen=True)
class ServeSpec:
    host: str
    port: int
    api_key: str | None


_lock = threading.RLock()
_server = None          # nbinfer.server.RunningServer
_spec: ServeSpec | None = None


def current():
    """The running server (with .url, .llm), or None."""
    server = _server
    return server if server is not None and server.running else None


def start(llm, spec: ServeSpec):
    """Serve `llm`; a server already running is stopped first. Raises ValueError when the port
    cannot be bound, ImportError without the server extra."""
    global _server, _spec
    from ..server import serve_in_thread

    with _lock:
        stop()
        _server = serve_in_thread(llm, host=spec.host, port=spec.port, api_key=spec.api_key)
        # --port 0 picked a port: keep the one it got, so a reload reopens the same URL
        _spec = ServeSpec(spec.host, _server.port, spec.api_key)
        return _server


def stop():
    """Stop serving; returns the stopped server (None if none ran)."""
    global _server
    with _lock:
        server, _server = _server, None
    if server is not None:
        server.stop()
    return server


def suspend() -> ServeSpec | None:
    """Stop serving before the engine is replaced; returns how to serve the next one (None: not serving)."""
    with _lock:
        spec = _spec if current() is not None else None
        stop()
        return spec


def spec() -> ServeSpec | None:
    return _spec if current() is not None else None


def _on_engine_change(target) -> None:
    # the served engine is no longer the session's: stop rather than serve a shut-down engine
    server = _server
    if server is not None and server.llm is not session.current_llm():
        stop()


session.add_listener(_on_engine_change)
