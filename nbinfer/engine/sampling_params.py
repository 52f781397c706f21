"""SamplingParams: vLLM's names and meanings; every invalid value is a ValueError naming the field."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

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
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        self.stop_token_ids = list(self.stop_token_ids or [])
        self._validate()

    def _validate(self):
        def bad(name, why):
            raise ValueError(f"SamplingParams.{name} {why}, got {getattr(self, name)!r}")

        def number(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                bad(name, "must be a number")
            return float(v)

        def integer(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                bad(name, "must be an integer")
            return v

        if number("temperature") < 0:
            bad("temperature", "must be >= 0")
        if not 0 < number("top_p") <= 1:
            bad("top_p", "must be in (0, 1]")
        if integer("top_k") == 0 or self.top_k < -1:
            bad("top_k", "must be -1 (disabled) or >= 1")
        if not 0 <= number("min_p") <= 1:
            bad("min_p", "must be in [0, 1]")
        if self.max_tokens is not None and integer("max_tokens") < 1:
            bad("max_tokens", "must be >= 1")
        if integer("n") < 1:
            bad("n", "must be >= 1")
        if self.seed is not None and not -2**63 <= integer("seed") < 2**64:
            bad("seed", "must fit in 64 bits")
        for name in ("logprobs", "prompt_logprobs"):
            if getattr(self, name) is not None and integer(name) < 0:
                bad(name, "must be >= 0")
        if number("repetition_penalty") <= 0:
            bad("repetition_penalty", "must be > 0")
        if not -2 <= number("presence_penalty") <= 2:
            bad("presence_penalty", "must be in [-2, 2]")
        if not -2 <= number("frequency_penalty") <= 2:
            bad("frequency_penalty", "must be in [-2, 2]")
        if any(not isinstance(s, str) or s == "" for s in self.stop):
            bad("stop", "must be non-empty strings")
        if any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in self.stop_token_ids):
            bad("stop_token_ids", "must be non-negative integers")
        if integer("logprob_start_len") < 0:
            bad("logprob_start_len", "must be >= 0")

    @property
    def greedy(self) -> bool:
        return self.temperature < _GREEDY_EPS

    @property
    def needs_penalties(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0

    def clone(self, **changes) -> "SamplingParams":
        return replace(self, **changes)
