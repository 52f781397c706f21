"""Constrained output for HTTP requests: regex / JSON schema / choice grammars (xgrammar, via
nbinfer.lang.constraints) and `min_tokens`, all as SamplingParams.constraint objects.

min_tokens needs no engine support: it is a mask too (EOS and stop token ids are not allowed until
the sequence has min_tokens tokens), stacked on a grammar when the request has one.
"""
from __future__ import annotations

import json
import re
import threading

import torch

from .errors import ApiError


class ConstraintBuilder:
    """One per served LLM: compiles grammars for its tokenizer (compiled grammars are cached)."""

    def __init__(self, llm):
        self.llm = llm
        self._factory = None
        self._lock = threading.Lock()

    @property
    def eos_ids(self) -> tuple[int, ...]:
        engine = getattr(self.llm, "engine", None)
        ids = set(getattr(engine, "eos_ids", ()) or ())
        if self.llm.tokenizer.eos_token_id is not None:
            ids.add(self.llm.tokenizer.eos_token_id)
        return tuple(sorted(ids))

    @property
    def vocab_size(self) -> int:
        # the logits' width (the model's vocab, often padded past the tokenizer's)
        mc = getattr(getattr(self.llm, "engine", None), "model_config", None)
        return int(getattr(mc, "vocab_size", 0) or len(self.llm.tokenizer))

    def _compiler(self):
        with self._lock:
            if self._factory is None:
                from ..lang.constraints import ConstraintFactory
                self._factory = ConstraintFactory(self.llm.tokenizer, self.vocab_size, self.eos_ids)
            return self._factory

    def regex(self, pattern, field: str):
        if not isinstance(pattern, str) or not pattern:
            raise ApiError(f"{field} must be a non-empty string", field)
        return self._compile("regex", pattern, field)

    def json_schema(self, schema, field: str):
        if isinstance(schema, dict):
            schema = json.dumps(schema)
        elif isinstance(schema, str):
            try:
                json.loads(schema)
            except ValueError:
                raise ApiError(f"{field} is not valid JSON", field) from None
        else:
            raise ApiError(f"{field} must be a JSON schema (an object or a JSON string)", field)
        return self._compile("json_schema", schema, field)

    def choice(self, choices, field: str):
        if (not isinstance(choices, list) or not choices
                or not all(isinstance(c, str) and c for c in choices)):
            raise ApiError(f"{field} must be a non-empty list of non-empty strings", field)
        return self._compile("regex", "(" + "|".join(re.escape(c) for c in choices) + ")", field)

    def _compile(self, kind: str, text: str, field: str):
        compiler = self._compiler()
        try:
            return compiler.regex(text) if kind == "regex" else compiler.json_schema(text)
        except ValueError as e:     # "gen(regex=...) cannot be compiled: why"
            why = str(e).split("cannot be compiled:", 1)[-1].strip()
            raise ApiError(f"{field} cannot be compiled: {why}", field) from None

    def with_min_tokens(self, grammar, min_tokens: int, stop_token_ids) -> object | None:
        if not min_tokens:
            return grammar
        banned = tuple(sorted(set(self.eos_ids) | set(stop_token_ids or ())))
        return MinTokens(min_tokens, banned, grammar)


class MinTokens:
    """SamplingParams.constraint: ban `banned` token ids for the first `count` tokens, then defer
    to `inner` (a grammar, or nothing)."""

    def __init__(self, count: int, banned: tuple[int, ...], inner=None):
        self.count = count
        self.banned = banned
        self.inner = inner

    def new_state(self) -> "_MinTokensState":
        return _MinTokensState(self, self.inner.new_state() if self.inner is not None else None)

    def __repr__(self) -> str:
        return f"MinTokens({self.count}, inner={self.inner!r})"


class _MinTokensState:
    def __init__(self, spec: MinTokens, inner):
        self.spec = spec
        self.inner = inner
        self.generated = 0

    def allowed_mask(self, vocab_size: int):
        mask = self.inner.allowed_mask(vocab_size) if self.inner is not None else None
        if self.generated >= self.spec.count:
            return mask
        held = torch.ones(vocab_size, dtype=torch.bool) if mask is None else mask.clone()
        banned = [t for t in self.spec.banned if t < vocab_size]
        held[banned] = False
        # a grammar that admits nothing but the end wins over min_tokens (never an empty mask)
        return held if held.any() else mask

    def accept(self, token_id: int) -> None:
        self.generated += 1
        if self.inner is not None:
            self.inner.accept(token_id)

    def is_finished(self) -> bool:
        return self.inner is not None and self.inner.is_finished()

    def is_complete(self) -> bool:
        return self.inner is None or self.inner.is_complete()
