"""RequestSink: where the engine thread writes a request's events. RequestHandle is the sink of
submit(); anything with these three methods can be one (a server's response stream, a test probe).

The engine calls them from its own thread, between steps, with its state lock held: they must only
hand the event over (put it in a queue, set an event), never block or call back into the engine.
Exactly one of on_finish / on_error ends a request, after its last on_delta.
"""
from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from .outputs import RequestOutput

log = logging.getLogger("nbinfer")


@runtime_checkable
class RequestSink(Protocol):
    def on_delta(self, index: int, text: str) -> None:
        """New text of output `index` (0..n-1); stop strings are never part of a delta."""

    def on_finish(self, output: RequestOutput) -> None:
        """The request is done (finished, stopped or aborted); output is final."""

    def on_error(self, error: BaseException) -> None:
        """The request failed (or the engine stopped) before it could finish."""


def tell(method, arg) -> None:
    """Call a sink's on_finish / on_error: what a sink raises is logged, never the engine's problem."""
    try:
        method(arg)
    except Exception:
        log.exception("a request sink raised")
