"""RequestHandle: the caller's side of one request. The engine thread writes to it (it is the request's
RequestSink), any thread reads."""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

from .outputs import RequestOutput

_POLL_S = 0.05   # waits wake up this often so Ctrl-C (KeyboardInterrupt) lands promptly
_END = None      # the queued event that ends a handle's stream


class RequestHandle:
    def __init__(self, request_id: str, n: int, canceller: Callable[[list["RequestHandle"]], None]):
        self.request_id = request_id
        self.n = n
        self._cancel = canceller
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._done = threading.Event()
        self._output: RequestOutput | None = None
        self._error: BaseException | None = None

    # -- RequestSink: the engine thread writes --------------------------------------------------
    def on_delta(self, index: int, text: str) -> None:
        self._put((index, text))

    def on_finish(self, output: RequestOutput) -> None:
        self._output = output
        self._done.set()
        self._put(_END)

    def on_error(self, error: BaseException) -> None:
        self._error = error
        self._done.set()
        self._put(_END)

    def _put(self, event) -> None:
        self._events.put(event)

    # -- caller side ------------------------------------------------------------------------------
    def stream(self) -> Iterator[tuple[int, str]]:
        """(output index, text delta) pairs as they arrive; ends when the request finishes."""
        while True:
            try:
                event = self._events.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if event is _END:
                self._events.put(_END)          # later iterations end at once too
                if self._error is not None:
                    raise self._error
                return
            yield event

    def __iter__(self) -> Iterator[str]:
        """Text deltas of the first output (of all outputs when n == 1, the usual case)."""
        for index, text in self.stream():
            if index == 0:
                yield text

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> RequestOutput:
        """Block until finished; returns the RequestOutput (raises what the engine raised)."""
        waited = 0.0
        while not self._done.wait(_POLL_S):
            waited += _POLL_S
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"request {self.request_id} still running after {timeout}s")
        if self._error is not None:
            raise self._error
        return self._output

    def cancel(self) -> None:
        """Abort the request: it finishes with finish_reason 'abort' and its blocks are freed
        before this returns."""
        cancel_all([self])

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"RequestHandle({self.request_id!r}, {state})"


def cancel_all(handles) -> None:
    """Cancel many requests in one engine step (not one step each): all aborts are queued before
    waiting. Finished handles are skipped; blocks are freed before this returns."""
    by_engine: dict[Callable, list[RequestHandle]] = {}
    for h in handles:
        if not h.done():
            by_engine.setdefault(h._cancel, []).append(h)
    for canceller, group in by_engine.items():
        canceller(group)
