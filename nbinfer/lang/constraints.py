"""Constrained decoding with xgrammar: a regex or JSON schema becomes a token mask in the sampler.

The engine's `SamplingParams.constraint` protocol: `new_state()` per sequence; the state's
`allowed_mask(vocab_size)` (bool tensor, True = allowed) before each sample, `accept(token)` after,
and `is_finished()` (the engine then ends the sequence with finish_reason "stop"). Masking happens
before temperature and top-k/p, so whatever is sampled -- at any temperature -- keeps the output
inside the language; the sequence ends as soon as the grammar admits nothing but the end.
"""
from __future__ import annotations

import threading

import torch


class GrammarConstraint:
    """A compiled grammar, shared by every sequence that uses it (one SamplingParams.constraint)."""

    def __init__(self, compiled, vocab_size: int, stop_ids: tuple[int, ...], description: str):
        self.compiled = compiled
        self.vocab_size = vocab_size
        self.stop_ids = stop_ids
        self.description = description

    def new_state(self) -> "GrammarState":
        return GrammarState(self)

    def __repr__(self) -> str:
        return f"GrammarConstraint({self.description})"


class GrammarState:
    """One sequence's position in the grammar (lives on the engine thread)."""

    def __init__(self, constraint: GrammarConstraint):
        import xgrammar as xgr
        self.c = constraint
        self.matcher = xgr.GrammarMatcher(constraint.compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, constraint.vocab_size)
        self._mask: torch.Tensor | None = None     # for the current position; None = not computed
        self._shifts = torch.arange(32, dtype=torch.int32)
        self._dead = False

    def _current_mask(self) -> torch.Tensor:
        if self._mask is None:
            self.matcher.fill_next_token_bitmask(self._bitmask)
            bits = (self._bitmask[0].unsqueeze(-1) >> self._shifts) & 1
            self._mask = bits.bool().flatten()[:self.c.vocab_size]
        return self._mask

    def allowed_mask(self, vocab_size: int) -> torch.Tensor:
        mask = self._current_mask()
        if vocab_size == mask.numel():
            return mask
        out = torch.zeros(vocab_size, dtype=torch.bool)       # logits wider or narrower than the tokenizer
        n = min(vocab_size, mask.numel())
        out[:n] = mask[:n]
        return out

    def accept(self, token_id: int) -> None:
        if not self.matcher.accept_token(int(token_id)):
            self._dead = True       # a token the mask did not allow (a forced stop token): end here
        self._mask = None

    def is_complete(self) -> bool:
        """The tokens so far form a whole match (more may follow, as with `[0-9]+`)."""
        return self.matcher.is_completed() and not self._dead

    def is_finished(self) -> bool:
        if self._dead or self.matcher.is_terminated():
            return True
        mask = self._current_mask()
        allowed = int(mask.sum())
        stops = sum(1 for t in self.c.stop_ids if t < mask.numel() and mask[t])
        return allowed == stops      # the grammar is complete and admits nothing more


# xgrammar reads `\s` as ECMAScript does, where U+FEFF is whitespace; in Python's re -- what a user
# checks an output with -- it is not. Every other ECMAScript whitespace character is Python whitespace
# too, so a regex's `\s` is compiled as that shared set: whatever the mask lets through, re matches.
_SHARED_WHITESPACE = r" \t\n\r\f\v\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"


def python_whitespace(pattern: str) -> str:
    r"""`pattern` with each `\s` (alone or in a [...] class) as the whitespace both dialects share."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            escape = pattern[i:i + 2]
            if escape == r"\s":
                escape = _SHARED_WHITESPACE if in_class else f"[{_SHARED_WHITESPACE}]"
            out.append(escape)
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
        elif ch == "]" and in_class:
            in_class = False
        out.append(ch)
        i += 1
    return "".join(out)


class ConstraintFactory:
    """Compiles regexes and JSON schemas for one tokenizer, with a cache (compiling is the slow part)."""

    def __init__(self, tokenizer, vocab_size: int, stop_ids: tuple[int, ...]):
        import xgrammar as xgr
        self.vocab_size = vocab_size
        self.stop_ids = tuple(sorted(set(stop_ids)))
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                  stop_token_ids=list(self.stop_ids) or None)
        self.compiler = xgr.GrammarCompiler(info, max_threads=1)
        self._cache: dict[tuple[str, str], GrammarConstraint] = {}
        self._lock = threading.Lock()

    def regex(self, pattern: str) -> GrammarConstraint:
        return self._get("regex", pattern)

    def json_schema(self, schema: str) -> GrammarConstraint:
        return self._get("json_schema", schema)

    def _get(self, kind: str, text: str) -> GrammarConstraint:
        key = (kind, text)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            try:   # compact JSON: free whitespace lets a sampled model pad until max_tokens cuts it off
                compiled = (self.compiler.compile_regex(python_whitespace(text)) if kind == "regex"
                            else self.compiler.compile_json_schema(text, any_whitespace=False))
            except Exception as e:
                what = "regex" if kind == "regex" else "json_schema"
                raise ValueError(f"gen({what}=...) cannot be compiled: {e}".splitlines()[0]) from None
            constraint = GrammarConstraint(compiled, self.vocab_size, self.stop_ids, f"{kind}={text!r}")
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = constraint
            return constraint
