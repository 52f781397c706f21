"""Server-sent events, as vLLM and SGLang stream: `data: {json}` lines, ending with `data: [DONE]`."""
from __future__ import annotations

import json
from typing import AsyncIterator

from fastapi.responses import StreamingResponse

from .bridge import Submitted
from .errors import ApiError, error_body


def _line(payload) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def sse_response(request, submitted: Submitted, chunks: AsyncIterator[dict]) -> StreamingResponse:
    """Stream `chunks` as SSE. A client that disconnects aborts the requests (their KV blocks are
    freed at once, not at the next token); an engine failure mid-stream is an error event."""
    async def body():
        watcher = submitted.abort_when_gone(request)
        try:
            try:
                async for chunk in chunks:
                    yield _line(chunk)
            except ApiError as e:
                yield _line(error_body(e.message, e.status, e.param))
            yield "data: [DONE]\n\n"
        finally:
            watcher.cancel()
            await submitted.abort()         # nothing to do when every request finished
    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
