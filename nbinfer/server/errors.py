"""API errors: every failure a client can cause is a 4xx with an OpenAI-style JSON body naming the
field, so both APIs (and the official clients, which read `error.message`) report it in one line.

    {"error": {"message": "...", "type": "BadRequestError", "param": "temperature", "code": 400}}
"""
from __future__ import annotations

import logging
import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("nbinfer.server")

_TYPES = {400: "BadRequestError", 401: "AuthenticationError", 404: "NotFoundError",
          405: "MethodNotAllowed", 413: "RequestTooLarge", 500: "InternalServerError",
          503: "ServiceUnavailable"}


class ApiError(Exception):
    """A client's mistake (or a missing feature) with the HTTP status and the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


def error_body(message: str, status: int, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": _TYPES.get(status, "Error"), "param": param, "code": status},
            # vLLM before 0.10 put these at the top level; old clients read them there
            "object": "error", "message": message}


def error_response(message: str, status: int, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(message, status, param), status_code=status)


_FIELD_OF_PARAMS = re.compile(r"^SamplingParams\.(\w+)")


def from_value_error(e: Exception, rename: dict[str, str] | None = None) -> ApiError:
    """The engine's ValueErrors ("SamplingParams.top_p must be in (0, 1], got 2") as a 400 naming the
    field by the API's own name (`rename` maps engine names to it, e.g. max_tokens -> max_new_tokens)."""
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    m = _FIELD_OF_PARAMS.match(text)
    param = None
    if m:
        param = (rename or {}).get(m.group(1), m.group(1))
        text = param + text[m.end():]
    elif text.startswith("prompt"):
        param = "prompt"
    return ApiError(text, param)


def _field_path(loc) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    # pydantic names the union member it tried ("str", "list[int]", "SglSamplingParams"): drop those
    parts = [p for p in parts if not (p.startswith(("function-", "list[", "dict[", "tagged-union"))
                                      or p in ("str", "int", "float", "bool", "none", "list", "dict")
                                      or p[:1].isupper())]
    return ".".join(parts)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    field = _field_path(first.get("loc", ()))
    msg = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return f"'{field}' is required", field or None
    if not field:
        return f"request body: {msg}", None
    return f"{field}: {msg}", field


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(exc.message, exc.status, exc.param)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        message, param = _validation_message(exc)
        return error_response(message, 400, param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.url.path} does not accept {request.method}"
        return error_response(detail, exc.status_code)

    @app.exception_handler(RuntimeError)
    async def _runtime(request: Request, exc: RuntimeError):
        if "shut down" in str(exc):      # the LLM was shut down under a running server
            return error_response(f"the engine is not running: {exc}", 503)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error serving %s %s", request.method, request.url.path)
        return error_response(f"internal error: {type(exc).__name__}: {exc}", 500)
