"""Reasoning formats: how a reasoning model marks its thinking, and splitting a generated text into
(reasoning, answer) -- what SGLang's `separate_reasoning(expr, model_type=...)` does with its
ReasoningParser's one-shot parse, for the model types SGLang 0.5.2 names.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import SglError


@dataclass(frozen=True)
class ReasoningFormat:
    start: str
    end: str
    starts_in_reasoning: bool = False   # the model opens its output already thinking (no start tag)


_THINK = ReasoningFormat("<think>", "</think>")
_THINKING_FIRST = ReasoningFormat("<think>", "</think>", starts_in_reasoning=True)

FORMATS = {
    "deepseek-r1": _THINKING_FIRST,     # R1 omits <think>; R1-0528 writes it
    "deepseek-v3": _THINK,
    "glm45": _THINK,
    "kimi": ReasoningFormat("\u25c1think\u25b7", "\u25c1/think\u25b7"),
    "qwen3": _THINK,
    "qwen3-thinking": _THINKING_FIRST,
    "step3": _THINKING_FIRST,
}


def reasoning_format(model_type) -> ReasoningFormat:
    known = ", ".join(FORMATS)
    if not isinstance(model_type, str) or not model_type:
        raise SglError(f"separate_reasoning() needs model_type= one of: {known}")
    fmt = FORMATS.get(model_type.lower())
    if fmt is None:
        hint = (" (gpt-oss writes the Harmony format, which nbinfer does not parse)"
                if model_type.lower() == "gpt-oss" else "")
        raise SglError(f"separate_reasoning(model_type={model_type!r}): unknown model type{hint}; "
                       f"known: {known}")
    return fmt


def split_reasoning(text: str, fmt: ReasoningFormat) -> tuple[str, str]:
    """(reasoning, answer), as SGLang splits them: no reasoning unless the text opens it (or the model
    always starts in it); reasoning never closed is all reasoning; the answer is stripped."""
    if not (fmt.starts_in_reasoning or fmt.start in text):
        return "", text
    inside = text.replace(fmt.start, "").strip()
    if fmt.end not in inside:
        return inside, ""
    reasoning, answer = inside.split(fmt.end, 1)
    return reasoning, answer.strip()
