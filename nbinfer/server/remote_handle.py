"""RemoteHandle: a remote request with RequestHandle's interface (iterate for text deltas, stream(),
result(), cancel(), done()). A thread reads the server's SSE stream; cancel() closes the connection,
which is how both vLLM and nbinfer learn to abort a request and free its KV cache."""
from __future__ import annotations

import json
import queue
import threading
from typing import Iterator

import httpx

from ..engine.outputs import RequestOutput
from .remote_capabilities import RemoteFeatureError

_POLL_S = 0.05


class RemoteRequestError(RuntimeError):
    """The server refused or failed the request (its message, one line)."""


class RemoteHandle:
    def __init__(self, http: httpx.Client, path: str, body: dict, protocol, acc):
        self.request_id = acc.request_id
        self.n = acc.n
        self._http, self._path, self._body = http, path, body
        self._protocol, self._acc = protocol, acc
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._done = threading.Event()
        self._cancelled = threading.Event()
        self._response: httpx.Response | None = None
        self._output: RequestOutput | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._read, daemon=True, name=f"nbinfer-remote-{acc.request_id}")
        self._thread.start()

    def _read(self) -> None:
        try:
            with self._http.stream("POST", self._path, json=self._body) as r:
                self._response = r
                if r.status_code != 200:
                    r.read()
                    raise RemoteRequestError(_error_message(r))
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
                        self._events.put((index, delta))
            self._output = self._acc.result(aborted=self._cancelled.is_set())
        except BaseException as e:      # noqa: BLE001 -- handed to the caller of result()
            if self._cancelled.is_set():
                self._output = self._acc.result(aborted=True)
            else:
                self._error = e if isinstance(e, (RemoteRequestError, RemoteFeatureError)) else \
                    RemoteRequestError(f"{self._http.base_url}{self._path}: {type(e).__name__}: {e}")
        finally:
            self._done.set()
            self._events.put(None)

    def stream(self) -> Iterator[tuple[int, str]]:
        while True:
            try:
                event = self._events.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if event is None:
                self._events.put(None)
                if self._error is not None:
                    raise self._error
                return
            yield event

    def __iter__(self) -> Iterator[str]:
        for index, text in self.stream():
            if index == 0:
                yield text

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> RequestOutput:
        waited = 0.0
        while not self._done.wait(_POLL_S):
            waited += _POLL_S
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"remote request {self.request_id} still running after {timeout}s")
        if self._error is not None:
            raise self._error
        return self._output

    def cancel(self) -> None:
        """Close the stream (the server aborts the request); returns once the reader has stopped."""
        if self._done.is_set():
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
