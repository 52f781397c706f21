"""RemoteHandle: a remote request that IS a RequestHandle (iterate for text deltas, stream(),
result(), cancel(), done(); `cancel_all` takes both kinds). A thread reads the server's SSE stream
and feeds the handle as the engine thread feeds a local one; cancel() closes the connection, which
is how both vLLM and nbinfer learn to abort a request and free its KV cache."""
from __future__ import annotations

import json
import threading

import httpx

from ..engine.handle import RequestHandle
from .remote_capabilities import RemoteFeatureError


class RemoteRequestError(RuntimeError):
    """The server refused or failed the request (its message, one line; `status`: the HTTP status)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def check_response(r: httpx.Response) -> httpx.Response:
    """r itself if the server answered 200, else its error as a RemoteRequestError."""
    if r.status_code != 200:
        raise RemoteRequestError(_error_message(r), r.status_code)
    return r


def _close_all(handles: list["RemoteHandle"]) -> None:
    for h in handles:
        h._close()


class RemoteHandle(RequestHandle):
    def __init__(self, http: httpx.Client, path: str, body: dict, protocol, acc):
        super().__init__(acc.request_id, acc.n, _close_all)
        self._http, self._path, self._body = http, path, body
        self._protocol, self._acc = protocol, acc
        self._cancelled = threading.Event()
        self._response: httpx.Response | None = None
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"nbinfer-remote-{acc.request_id}")
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._http.stream("POST", self._path, json=self._body) as r:
                self._response = r
                if r.status_code != 200:
                    r.read()
                    check_response(r)
                if not self._body.get("stream", True):     # one JSON answer (see OpenAIProtocol)
                    r.read()
                    for index, delta in self._protocol.parse(r.json(), self._acc):
                        self.on_delta(index, delta)
                    self.on_finish(self._acc.result())
                    return
                for line in r.iter_lines():
                    if self._cancelled.is_set():
                        break
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if "error" in chunk and "choices" not in chunk and "text" not in chunk:
                        raise RemoteRequestError(_message_of(chunk))
                    for index, delta in self._protocol.parse(chunk, self._acc):
                        self.on_delta(index, delta)
            self.on_finish(self._acc.result(aborted=self._cancelled.is_set()))
        except BaseException as e:      # noqa: BLE001 -- handed to the caller of result()
            if self._cancelled.is_set():
                self.on_finish(self._acc.result(aborted=True))
            elif isinstance(e, (RemoteRequestError, RemoteFeatureError)):
                self.on_error(e)
            else:
                self.on_error(RemoteRequestError(f"{self._http.base_url}{self._path}: {type(e).__name__}: {e}"))

    def _close(self) -> None:
        """Close the stream (the server aborts the request); returns once the reader has stopped."""
        if self.done():
            return
        self._cancelled.set()
        response = self._response
        if response is not None:
            try:
                response.close()
            except Exception:       # closing from another thread while it reads: the reader ends either way
                pass
        self._thread.join(10)

    def __repr__(self) -> str:
        return f"RemoteHandle({self.request_id!r}, {'done' if self.done() else 'running'})"


def _message_of(body) -> str:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if body.get("message"):
            return str(body["message"])
        if body.get("detail"):
            return str(body["detail"])
    return str(body)[:300]


def _error_message(r: httpx.Response) -> str:
    try:
        text = _message_of(r.json())
    except ValueError:
        text = r.text[:300]
    return f"the server answered {r.status_code}: {text}"
