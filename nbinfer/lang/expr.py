"""SGL expressions: the values a program appends to its state (`s += ...`).

`gen(...)`, `select(...)`, `user(...)` and friends build these; `+` with strings builds a list of
them, evaluated left to right. The interpreter's state executor runs them (state.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable

from .reasoning import ReasoningFormat


class SglExpr:
    """Base: `"text" + expr`, `expr + "text"` and `expr + expr` build an SglExprList."""

    def __add__(self, other):
        return SglExprList.concat(self, other)

    def __radd__(self, other):
        return SglExprList.concat(other, self)


def as_expr(value) -> SglExpr:
    if isinstance(value, SglExpr):
        return value
    if isinstance(value, str):
        return SglText(value)
    raise TypeError(f"can only append str or SGL expressions (gen, select, roles) to a program state, "
                    f"got {type(value).__name__}")


@dataclass(eq=False)
class SglText(SglExpr):
    value: str

    def __repr__(self) -> str:
        return f"Text({self.value!r})"


@dataclass(eq=False)
class SglExprList(SglExpr):
    items: list[SglExpr]

    @staticmethod
    def concat(a, b) -> "SglExprList":
        a, b = as_expr(a), as_expr(b)
        left = a.items if isinstance(a, SglExprList) else [a]
        right = b.items if isinstance(b, SglExprList) else [b]
        return SglExprList(left + right)


@dataclass(frozen=True)
class GenParams:
    """gen()'s sampling arguments; None means "the run's default" (SGLang semantics)."""
    max_tokens: int | None = None
    min_tokens: int | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    stop_regex: str | list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    ignore_eos: bool | None = None
    return_logprob: bool | None = None
    logprob_start_len: int | None = None
    top_logprobs_num: int | None = None
    return_text_in_logprobs: bool | None = None
    dtype: Any = None                   # int | float | bool | str, or their names
    regex: str | None = None
    json_schema: str | dict | None = None

    def given(self) -> dict:
        """The arguments the program actually passed."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(eq=False)
class SglGen(SglExpr):
    name: str | None
    params: GenParams = field(default_factory=GenParams)
    reasoning: ReasoningFormat | None = None    # separate_reasoning(): split the thinking off the output

    def __repr__(self) -> str:
        return f"Gen({self.name!r})"


@dataclass(eq=False)
class SglSelect(SglExpr):
    name: str | None
    choices: list[str]
    temperature: float = 0.0
    choices_method: Callable | None = None     # None: token_length_normalized
    reasoning: ReasoningFormat | None = None

    def __repr__(self) -> str:
        return f"Select({self.name!r}, {self.choices!r})"


@dataclass(eq=False)
class SglRoleBegin(SglExpr):
    role: str


@dataclass(eq=False)
class SglRoleEnd(SglExpr):
    role: str


@dataclass(eq=False)
class SglVarScopeBegin(SglExpr):
    name: str


@dataclass(eq=False)
class SglVarScopeEnd(SglExpr):
    name: str


@dataclass(eq=False)
class SglConcateAndAppend(SglExpr):
    """join(mode="concate_and_append"): the forks' new text, concatenated, appended to the parent."""
    forks: list     # the forks' StateExecutors, in order


def role(name: str, expr=None) -> SglExprList:
    inner = [] if expr is None else [as_expr(expr)]
    return SglExprList([SglRoleBegin(name), *inner, SglRoleEnd(name)])
