"""Mailbox: the one way into the engine thread. Any thread posts a message (messages.py); the engine
thread handles them in order between steps, one handler per message type, under the state lock.

Once closed (shutdown) the engine thread finishes what it was doing and leaves; every message still
queued, or posted after it left, is refused -- so nobody waits on a message forever.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import TimeoutError as FutureTimeout     # the builtin one from Python 3.11
from typing import Callable

from .handle import POLL_S
from .messages import AbortRequests, Call, Message, Stop


class Mailbox:
    def __init__(self, handlers: dict[type, Callable[[Message], None]],
                 refuse: Callable[[Message, BaseException], None], lock: threading.Lock):
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self._handlers = handlers
        self._refuse = refuse          # the one refusal path (the engine's, so it can free an id)
        self._lock = lock              # handlers change what stats() reads
        self.closed_by: BaseException | None = None       # what later messages are refused with
        self._left = threading.Event()                     # the engine thread reads no more
        self.reader: threading.Thread | None = None        # the engine thread

    def post(self, msg: Message) -> None:
        """Queue a message for the engine thread. If the mailbox closed meanwhile, the thread's last
        look may already be over: wait for it to leave and refuse what is left here."""
        self._queue.put(msg)
        if self.closed_by is not None and threading.current_thread() is not self.reader:
            self._left.wait()
            self.refuse_left()

    def ask(self, msg: Call | AbortRequests, timeout: float | None = None):
        """Post msg and wait for its reply, in short waits so Ctrl-C lands. The engine thread cannot
        wait for itself: there the message is queued and ask returns None at once."""
        self.post(msg)
        if threading.current_thread() is self.reader:
            return None
        waited = 0.0
        while True:
            try:
                return msg.reply.result(POLL_S)
            except FutureTimeout:
                if msg.reply.done():
                    raise                       # what fn itself raised
                waited += POLL_S
                if timeout is not None and waited >= timeout:
                    raise TimeoutError("the engine thread did not answer") from None

    def close(self, error: BaseException) -> None:
        """From now on messages are refused with `error` (the first close's error stays)."""
        if self.closed_by is None:
            self.closed_by = error
        self._queue.put(Stop())

    # -- engine thread ----------------------------------------------------------------------------
    def handle(self, block: bool) -> bool:
        """Handle what is queued (waiting for a first message if block); False once told to stop."""
        try:
            msg = self._queue.get() if block else self._queue.get_nowait()
        except queue.Empty:
            return True
        while not isinstance(msg, Stop):
            with self._lock:
                self._handlers[type(msg)](msg)
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                return True
        return False

    def leave(self) -> None:
        """The engine thread's last act: it reads no more, and refuses what is left."""
        self._left.set()
        self.refuse_left()

    def refuse_left(self) -> None:
        while True:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                return
            self._refuse(msg, self.closed_by or RuntimeError("the engine stopped"))
