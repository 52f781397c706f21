"""The ASGI app: OpenAI-compatible and SGLang-native routes over one in-process nbinfer.LLM.

    app = create_app(llm, api_key="secret")      # then any ASGI server; serve.py runs uvicorn

Two plain ASGI middlewares guard every route: the API key (all routes but /health) and the body
size limit (413 before the body is parsed). Both answer in the same JSON error shape as the routes.
"""
from __future__ import annotations

import hmac
import json

from fastapi import FastAPI
from fastapi.responses import Response

from ..version import __version__
from .errors import error_body, install_error_handlers
from .openai_routes import openai_router
from .sglang_routes import sglang_router
from .state import ServerState

DEFAULT_MAX_BODY_BYTES = 16 * 2**20
_OPEN_PATHS = ("/health",)


async def _send_error(send, status: int, message: str, headers: list | None = None) -> None:
    body = json.dumps(error_body(message, status)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """`Authorization: Bearer KEY` on every route but /health (401 otherwise)."""

    def __init__(self, app, api_key: str):
        self.app = app
        self.expected = f"Bearer {api_key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):
            return await _send_error(send, 401, "missing or wrong API key: send the header "
                                                "'Authorization: Bearer <key>'",
                                     [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reads the body up to `limit` bytes (413 beyond), then hands it to the app in one piece; later
    receive() calls go to the server (the routes wait on them for a client's disconnect)."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await _send_error(send, 413, f"request body too large: {int(declared)} bytes; the limit is "
                                                f"{self.limit}")
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":        # the client left before sending it all
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                return await _send_error(send, 413, f"request body too large: over {self.limit} bytes")
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


def create_app(llm, api_key: str | None = None, model_name: str | None = None,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    state = ServerState.for_llm(llm, model_name)
    app = FastAPI(title="nbinfer", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.nbinfer = state
    install_error_handlers(app)
    app.include_router(openai_router(state))
    app.include_router(sglang_router(state))

    @app.get("/health")
    async def health():
        try:
            state.llm.stats()
        except RuntimeError:
            return Response(status_code=503)
        return Response(status_code=200)

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)     # added last: runs first
    return app
