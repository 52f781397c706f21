"""Errors a user's SGL program can cause: one sentence naming what is wrong and where.

Both render as that one line in IPython (`_render_traceback_`), never as a traceback.
"""
from __future__ import annotations


class SglError(Exception):
    """A program misuses the SGL language (bad argument, missing backend, nested roles, ...)."""

    def _render_traceback_(self) -> list[str]:
        return [describe_error(self)]


class SglCompileError(SglError):
    """A program cannot be compiled; `where`, `line` and `column` (1-based) say where."""

    def __init__(self, what: str, where: str, line: int, column: int):
        self.what, self.where, self.line, self.column = what, where, line, column
        super().__init__(f"{where} line {line}, column {column}: {what}")

    def __str__(self) -> str:
        return f"{self.where} line {self.line}, column {self.column}: {self.what}"


class ProgramCancelled(BaseException):
    """Raised inside a program whose run was cancelled (Ctrl-C, an error in a sibling fork).

    A BaseException so that `except Exception:` in user code cannot swallow it."""


def describe_error(exc: BaseException) -> str:
    """One line for an error raised while a program ran: type, message and program line."""
    where = getattr(exc, "_sgl_where", None)
    name = type(exc).__name__
    return f"{name} at {where}: {exc}" if where else f"{name}: {exc}"
