"""SamplingParams: vLLM's names and meanings; every invalid value is a ValueError naming the field."""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace

from .checks import Checker

_GREEDY_EPS = 1e-5


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    max_tokens: int | None = 16
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    ignore_eos: bool = False
    n: int = 1
    seed: int | None = None
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    # SGLang's name: prompt positions before this one need no prompt logprobs, so a cached prefix up
    # to here can be reused (what `select` relies on). 0 = logprobs for the whole prompt.
    logprob_start_len: int = 0
    # Constrained decoding (regex / JSON schema), built by nbinfer.lang.constraints: an object with
    # new_state() -> state; state.allowed_mask(vocab_size) -> bool tensor | None, state.accept(token),
    # state.is_finished(). The engine keeps one state per sequence.
    constraint: object | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        self._validate()

    def _validate(self):
        """Every field checked (type, range, finiteness), normalised in place (stop becomes a list)."""
        check = Checker("SamplingParams")
        self.temperature = check.number("temperature", self.temperature, low=0.0)
        self.top_p = check.number("top_p", self.top_p, low=0.0, high=1.0, low_open=True)
        self.top_k = check.integer("top_k", self.top_k, low=-1)
        if self.top_k == 0:
            check.fail("top_k", 0, "must be -1 (disabled) or >= 1")
        self.min_p = check.number("min_p", self.min_p, low=0.0, high=1.0)
        self.max_tokens = check.integer("max_tokens", self.max_tokens, low=1, optional=True)
        self.stop = _string_list(check, "stop", self.stop)
        self.stop_token_ids = _token_list(check, "stop_token_ids", self.stop_token_ids)
        self.ignore_eos = check.boolean("ignore_eos", self.ignore_eos)
        self.n = check.integer("n", self.n, low=1)
        self.seed = check.integer("seed", self.seed, low=-2**63, high=2**64 - 1, optional=True)
        self.logprobs = check.integer("logprobs", self.logprobs, low=0, optional=True)
        self.prompt_logprobs = check.integer("prompt_logprobs", self.prompt_logprobs, low=0, optional=True)
        self.repetition_penalty = check.number("repetition_penalty", self.repetition_penalty, low=0.0, low_open=True)
        self.presence_penalty = check.number("presence_penalty", self.presence_penalty, low=-2.0, high=2.0)
        self.frequency_penalty = check.number("frequency_penalty", self.frequency_penalty, low=-2.0, high=2.0)
        self.skip_special_tokens = check.boolean("skip_special_tokens", self.skip_special_tokens)
        self.include_stop_str_in_output = check.boolean("include_stop_str_in_output", self.include_stop_str_in_output)
        self.logprob_start_len = check.integer("logprob_start_len", self.logprob_start_len, low=0)
        if self.constraint is not None and not callable(getattr(self.constraint, "new_state", None)):
            check.fail("constraint", self.constraint, "must have a new_state() method (see nbinfer.lang.constraints)")

    @property
    def greedy(self) -> bool:
        return self.temperature < _GREEDY_EPS

    @property
    def needs_penalties(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0

    def clone(self, **changes) -> "SamplingParams":
        return replace(self, **changes)


def _string_list(check: Checker, name: str, value) -> list[str]:
    """None, a str or a list/tuple of non-empty str -> a list."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(s, str) and s for s in value):
        check.fail(name, value, "must be a non-empty string or a list of non-empty strings")
    return list(value)


def _token_list(check: Checker, name: str, value) -> list[int]:
    """None or a list/tuple of non-negative token ids -> a list of int."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or any(isinstance(t, bool) or not isinstance(t, numbers.Integral)
                                                   or t < 0 for t in value):
        check.fail(name, value, "must be a list of non-negative integer token ids")
    return [int(t) for t in value]
