"""Running the app: in a background thread next to a live engine (what `%nbinfer serve` needs: the
notebook's cells keep working while HTTP clients use the same engine), or in the foreground for
`nbinfer serve`.

    server = serve_in_thread(llm, port=8000, api_key="secret")   # returns once it accepts connections
    server.url                                                   # "http://127.0.0.1:8000"
    server.stop()                                                # closes it; the LLM keeps running

The socket is bound here, in the caller's thread, so a port already in use is an error at once; port 0
picks a free one.
"""
from __future__ import annotations

import logging
import socket
import threading
import time

import uvicorn

from .app import DEFAULT_MAX_BODY_BYTES, create_app

log = logging.getLogger("nbinfer.server")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _ThreadServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:     # older uvicorn: only the main thread may
        pass


class RunningServer:
    """A server on its own thread and event loop."""

    def __init__(self, llm, host: str, port: int, api_key: str | None, model_name: str | None,
                 max_body_bytes: int, log_level: str):
        self.llm = llm
        self.host = host
        self._sock = _bind(host, port)
        self.port = self._sock.getsockname()[1]
        app = create_app(llm, api_key=api_key, model_name=model_name, max_body_bytes=max_body_bytes)
        config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5, access_log=False,
                                lifespan="off")
        self._server = _ThreadServer(config)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"nbinfer-server-{self.port}", daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                self._sock.close()
                raise RuntimeError(f"the server did not start: {self._error}")
            time.sleep(0.01)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as e:      # reported by the constructor if it happens during startup
            self._error = e
            log.exception("the nbinfer server stopped with an error")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop accepting, end open streams (their requests are aborted), close the socket."""
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> "RunningServer":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"RunningServer({self.url}, {'running' if self.running else 'stopped'})"


def serve_in_thread(llm, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                    model_name: str | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                    log_level: str = "warning") -> RunningServer:
    """Serve an existing LLM from a background thread; returns once it accepts connections."""
    return RunningServer(llm, host, port, api_key, model_name, max_body_bytes, log_level)
