"""From the engine's thread-side RequestHandles to the server's event loop, and back for aborts.

`Submitted.events()` is an async iterator of (prompt index, output index, text delta) followed by
each prompt's final RequestOutput; one thread per HTTP request reads all its handles as one stream
(merge_streams: handles block, the event loop must not) and hands the events to the loop. Whoever stops iterating early -- a client that disconnected, an error -- calls
`abort()`, which cancels every handle and returns once the engine has freed their KV blocks.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import AsyncIterator

import anyio

from ..engine.handle import RequestHandle, cancel_all, merge_streams
from ..engine.outputs import RequestOutput
from .errors import ApiError, from_value_error


@dataclass(frozen=True)
class Delta:
    prompt: int            # which prompt of the request
    index: int             # which of its n outputs
    text: str


@dataclass(frozen=True)
class Finished:
    prompt: int
    output: RequestOutput


class Submitted:
    """The engine requests behind one HTTP request (one per prompt)."""

    def __init__(self, handles: list[RequestHandle]):
        self.handles = handles
        self._queue: asyncio.Queue = asyncio.Queue()
        loop = asyncio.get_running_loop()
        merged = merge_streams(handles)     # takes the handles' events over now: none is missed
        threading.Thread(target=self._pump, args=(loop, merged), daemon=True,
                         name="nbinfer-http-" + ",".join(h.request_id for h in handles[:2])).start()

    def _pump(self, loop, merged) -> None:
        def put(event) -> None:
            try:
                loop.call_soon_threadsafe(self._queue.put_nowait, event)
            except RuntimeError:            # the loop is gone: the server stopped
                pass

        for event in merged:
            if not event.finished:
                put(Delta(event.handle, event.index, event.text))
                continue
            try:
                put(Finished(event.handle, self.handles[event.handle].result()))
            except BaseException as e:      # the engine failed this request (or was shut down)
                put(e)

    async def events(self) -> AsyncIterator[Delta | Finished]:
        remaining = len(self.handles)
        while remaining:
            event = await self._queue.get()
            if isinstance(event, BaseException):
                raise ApiError(f"the engine failed this request: {event}", status=500)
            if isinstance(event, Finished):
                remaining -= 1
            yield event

    async def outputs(self) -> list[RequestOutput]:
        """Wait for every prompt's final output, in prompt order."""
        done: dict[int, RequestOutput] = {}
        async for event in self.events():
            if isinstance(event, Finished):
                done[event.prompt] = event.output
        return [done[i] for i in range(len(self.handles))]

    async def outputs_unless_gone(self, request) -> list[RequestOutput]:
        """outputs(), aborting every request if the HTTP client disconnects meanwhile."""
        watcher = self.abort_when_gone(request)
        try:
            return await self.outputs()
        finally:
            watcher.cancel()

    def abort_when_gone(self, request) -> asyncio.Task:
        """A task that aborts these requests when the client disconnects (cancel it when done)."""
        async def watch():
            while True:
                message = await request.receive()
                if message["type"] == "http.disconnect":
                    await self.abort()
                    return
        return asyncio.ensure_future(watch())

    async def abort(self) -> None:
        """Cancel what is still running; returns when the blocks are free (even inside a cancelled
        task: the client that went away must not leave its KV cache behind)."""
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(cancel_all, self.handles)


async def submit_all(llm, prompts: list, params: list, request_ids: list[str], origin: str = "server",
                     rename: dict[str, str] | None = None) -> Submitted:
    """Submit every prompt (tokenizing off the event loop); one bad prompt fails the whole HTTP
    request with a 400 and aborts what was already queued."""
    def submit() -> list[RequestHandle]:
        handles: list[RequestHandle] = []
        try:
            for i, (prompt, p, rid) in enumerate(zip(prompts, params, request_ids)):
                try:
                    handles.append(llm.submit(prompt, p, request_id=rid, origin=origin))
                except RuntimeError as e:          # the engine was shut down
                    raise ApiError(str(e), status=503) from None
                except ValueError as e:
                    err = from_value_error(e, rename)
                    if len(prompts) > 1:
                        err.message = f"prompt {i}: {err.message}"
                    raise err from None
            return handles
        except BaseException:
            cancel_all(handles)
            raise
    handles = await anyio.to_thread.run_sync(submit)
    return Submitted(handles)
