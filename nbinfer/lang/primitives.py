"""The SGL primitives: gen, select, the role markers and separate_reasoning a program appends to its
state.

Each builds an expression (expr.py) and nothing more; the state's executor runs it. This module
sits at the bottom of the language so that the state (`s.generate(...)`), the interpreter's
namespace and the public API all take the primitives from here.
"""
from __future__ import annotations

import dataclasses
import re

from .choices import ChoicesSamplingMethod, token_length_normalized
from .errors import SglError
from .expr import GenParams, SglExpr, SglExprList, SglGen, SglRoleBegin, SglRoleEnd, SglSelect, role
from .reasoning import reasoning_format
from .sampling import REGEX_BOOL, REGEX_FLOAT, REGEX_INT, REGEX_STR


def gen(name: str | None = None, max_tokens: int | None = None, min_tokens: int | None = None,
        n: int | None = None, stop: str | list[str] | None = None, stop_token_ids: list[int] | None = None,
        stop_regex: str | list[str] | None = None, temperature: float | None = None, top_p: float | None = None,
        top_k: int | None = None, min_p: float | None = None, frequency_penalty: float | None = None,
        presence_penalty: float | None = None, ignore_eos: bool | None = None, return_logprob: bool | None = None,
        logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
        return_text_in_logprobs: bool | None = None, dtype=None, choices: list[str] | None = None,
        choices_method: ChoicesSamplingMethod | None = None, regex: str | None = None,
        json_schema: str | dict | None = None):
    """Generate into variable `name`. With `choices`, a select. `regex` / `json_schema` / `dtype`
    constrain the output (a token mask: it always matches)."""
    if choices:
        return SglSelect(name, list(choices), 0.0 if temperature is None else temperature, choices_method)
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as e:
            raise SglError(f"gen({name!r}): regex {regex!r} is invalid: {e}") from None
    return SglGen(name, GenParams(
        max_tokens=max_tokens, min_tokens=min_tokens, n=n, stop=stop, stop_token_ids=stop_token_ids,
        stop_regex=stop_regex, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
        frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, ignore_eos=ignore_eos,
        return_logprob=return_logprob, logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
        return_text_in_logprobs=return_text_in_logprobs, dtype=dtype, regex=regex, json_schema=json_schema))


def gen_int(name: str | None = None, **kwargs):
    return gen(name, dtype=int, **kwargs)


def gen_string(name: str | None = None, **kwargs):
    return gen(name, dtype=str, **kwargs)


def select(name: str | None = None, choices: list[str] | None = None, temperature: float = 0.0,
           choices_method: ChoicesSamplingMethod = token_length_normalized):
    """Pick one of `choices` by the model's length-normalized log-prob of each after the text so far."""
    if not choices:
        raise SglError(f"select({name!r}) needs choices")
    return SglSelect(name, list(choices), temperature, choices_method)


def system(expr=None):
    return role("system", expr)


def user(expr=None):
    return role("user", expr)


def assistant(expr=None):
    return role("assistant", expr)


def system_begin():
    return SglRoleBegin("system")


def system_end():
    return SglRoleEnd("system")


def user_begin():
    return SglRoleBegin("user")


def user_end():
    return SglRoleEnd("user")


def assistant_begin():
    return SglRoleBegin("assistant")


def assistant_end():
    return SglRoleEnd("assistant")


def separate_reasoning(expr=None, model_type: str | None = None):
    """SGLang's separate_reasoning: each named gen / select in `expr` has its reasoning (the
    `<think>...</think>` part, per `model_type`) moved out of the text into the variable
    `<name>_reasoning_content`; the text and the variable `<name>` keep the answer."""
    fmt = reasoning_format(model_type)
    marked = _with_reasoning(expr, fmt) if isinstance(expr, SglExpr) else None
    if marked is None:
        raise SglError(f"separate_reasoning() needs a gen(...) or select(...) to separate, got {expr!r}")
    return marked


def _with_reasoning(expr: SglExpr, fmt):
    """A copy of `expr` whose gens and selects separate reasoning; None if it has none."""
    if isinstance(expr, SglExprList):
        items = [_with_reasoning(item, fmt) for item in expr.items]
        if all(item is None for item in items):
            return None
        return SglExprList([new or old for new, old in zip(items, expr.items)])
    if isinstance(expr, (SglGen, SglSelect)):
        if expr.name is None:
            raise SglError("separate_reasoning() needs a named gen / select, e.g. gen(\"answer\"): the "
                           "reasoning goes to the variable <name>_reasoning_content")
        return dataclasses.replace(expr, reasoning=fmt)
    return None


def image(*args, **kwargs):
    raise SglError("sgl.image() is not supported: nbinfer serves text-only models")


def video(*args, **kwargs):
    raise SglError("sgl.video() is not supported: nbinfer serves text-only models")


# what every program body sees without importing it (with @function / @instruct, which program.py adds)
PRIMITIVES = {f.__name__: f for f in (
    gen, gen_int, gen_string, select, system, user, assistant, system_begin, system_end, user_begin, user_end,
    assistant_begin, assistant_end, separate_reasoning)}
PRIMITIVES.update(REGEX_INT=REGEX_INT, REGEX_FLOAT=REGEX_FLOAT, REGEX_BOOL=REGEX_BOOL, REGEX_STR=REGEX_STR)
