"""RequestHandle: the caller's side of one request. The engine thread writes to it (it is the request's
RequestSink), any thread reads. merge_streams() reads many handles as one stream on one thread."""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

from .outputs import RequestOutput

POLL_S = 0.05   # waits wake up this often so Ctrl-C (KeyboardInterrupt) lands promptly
_END = None      # the queued event that ends a handle's stream


class RequestHandle:
    def __init__(self, request_id: str, n: int, canceller: Callable[[list["RequestHandle"]], None]):
        self.request_id = request_id
        self.n = n
        self._cancel = canceller
        self._lock = threading.Lock()                 # orders events against a merge_streams() takeover
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._merged: tuple[queue.SimpleQueue, int] | None = None   # (merged queue, position) once merged
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
        with self._lock:
            if self._merged is None:
                self._events.put(event)
            else:
                merged, position = self._merged
                merged.put(_stream_event(position, event))

    # -- caller side ------------------------------------------------------------------------------
    def stream(self) -> Iterator[tuple[int, str]]:
        """(output index, text delta) pairs as they arrive; ends when the request finishes."""
        if self._merged is not None:
            raise RuntimeError(f"request {self.request_id}'s events go to merge_streams(); read them there")
        while True:
            try:
                event = self._events.get(timeout=POLL_S)
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
        while not self._done.wait(POLL_S):
            waited += POLL_S
            if timeout is not None and waited >= timeout:
                raise TimeoutError(f"request {self.request_id} still running after {timeout}s")
        if self._error is not None:
            raise self._error
        return self._output

    def cancel(self) -> None:
        """Abort the request: it finishes with finish_reason 'abort' and its blocks are freed
        before this returns."""
        cancel_all([self])

    def _merge_into(self, merged: queue.SimpleQueue, position: int) -> None:
        """From now on this handle's events go to `merged`, tagged with `position`; the ones already
        queued move there first, so the order holds."""
        with self._lock:
            if self._merged is not None:
                raise ValueError(f"request {self.request_id} is already in a merge_streams()")
            while True:
                try:
                    event = self._events.get_nowait()
                except queue.Empty:
                    break
                merged.put(_stream_event(position, event))
                if event is _END:
                    break
            self._merged = (merged, position)

    def __repr__(self) -> str:
        state = "done" if self.done() else "running"
        return f"RequestHandle({self.request_id!r}, {state})"


@dataclass(frozen=True)
class StreamEvent:
    """One event of merge_streams(): a text delta of one handle's output, or that handle's end."""
    handle: int              # position of the handle in the list given to merge_streams()
    index: int | None        # which of the handle's n outputs the text belongs to; None on the end event
    text: str                # the delta; "" on the end event
    finished: bool = False   # the handle's last event: its result() now returns (or raises) at once


def _stream_event(position: int, event) -> StreamEvent:
    if event is _END:
        return StreamEvent(position, None, "", finished=True)
    index, text = event
    return StreamEvent(position, index, text)


def merge_streams(handles: Iterable[RequestHandle]) -> Iterator[StreamEvent]:
    """The events of many handles as one stream, in the order the engine produced them, read on the
    caller's thread (no thread per handle, no polling of each). Ends after every handle's end event.
    The handles' events go here from the call on: their own stream() is no longer available."""
    handles = list(handles)
    if len({id(h) for h in handles}) != len(handles):
        raise ValueError("merge_streams() got the same handle twice")
    merged: queue.SimpleQueue = queue.SimpleQueue()
    for position, handle in enumerate(handles):
        handle._merge_into(merged, position)
    return _read_merged(merged, len(handles))


def _read_merged(merged: queue.SimpleQueue, open_handles: int) -> Iterator[StreamEvent]:
    while open_handles:
        try:
            event = merged.get(timeout=POLL_S)
        except queue.Empty:
            continue
        if event.finished:
            open_handles -= 1
        yield event


def cancel_all(handles) -> None:
    """Cancel many requests in one engine step (not one step each): all aborts are queued before
    waiting. Finished handles are skipped; blocks are freed before this returns."""
    by_engine: dict[Callable, list[RequestHandle]] = {}
    for h in handles:
        if not h.done():
            by_engine.setdefault(h._cancel, []).append(h)
    for canceller, group in by_engine.items():
        canceller(group)
