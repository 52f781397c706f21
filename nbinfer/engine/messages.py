"""The engine's mailbox: each message a caller's thread can post to the engine thread, one frozen
dataclass each. The engine has one handler per message; a message that arrives once the engine has
stopped is refused through its refuse(), so nobody waits on it (on its reply) forever."""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Union

from .sequence import Request
from .sink import RequestSink


@dataclass(frozen=True)
class AddRequest:
    request: Request                                 # validated and tokenized by submit()

    def refuse(self, error: BaseException) -> None:
        self.request.sink.on_error(error)


@dataclass(frozen=True)
class AbortRequests:
    targets: tuple[tuple[str, RequestSink], ...]     # (request id, its sink): a newer request that
                                                     # reuses a finished one's id is left alone
    reply: Future                                    # resolved once their blocks are free

    def refuse(self, error: BaseException) -> None:
        self.reply.set_result(None)                  # a stopped engine holds no blocks


@dataclass(frozen=True)
class Call:
    fn: Callable[[], Any]                            # run between steps, under the state lock
    reply: Future                                    # fn's result, or what it raised

    def refuse(self, error: BaseException) -> None:
        self.reply.set_exception(error)


@dataclass(frozen=True)
class Stop:
    def refuse(self, error: BaseException) -> None:
        pass


Message = Union[AddRequest, AbortRequests, Call, Stop]
