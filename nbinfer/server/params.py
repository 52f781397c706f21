"""SamplingParams from an HTTP request, shared by the OpenAI and SGLang routes.

The engine's SamplingParams validates every value (ValueError naming the field); here its errors
become 400s naming the field as the API calls it. A request for zero new tokens (SGLang's
`max_new_tokens: 0`, vLLM's `max_tokens: 0` with echo) runs one greedy token that is then dropped:
the engine always samples, and the prompt's KV and log-probs are what such a request is for.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from ..engine.sampling_params import SamplingParams
from .errors import ApiError, from_value_error

_ENGINE_FIELDS = {f.name for f in fields(SamplingParams)}


@dataclass(frozen=True)
class Planned:
    params: SamplingParams
    drop_output: bool = False      # zero new tokens were asked for


def model_defaults(llm) -> dict:
    """The model's generation_config recommendations (temperature, top_p, ...), as vLLM applies
    them to requests that leave those fields out."""
    recommended = llm.get_default_sampling_params()
    plain = SamplingParams()
    return {name: getattr(recommended, name) for name in ("temperature", "top_p", "top_k", "min_p",
                                                          "repetition_penalty")
            if getattr(recommended, name) != getattr(plain, name)}


def plan(values: dict, rename: dict[str, str] | None = None, defaults: dict | None = None) -> Planned:
    """values: engine field -> value (None = not given). rename: engine field -> the API's name,
    for error messages."""
    given = {k: v for k, v in values.items() if v is not None}
    unknown = set(given) - _ENGINE_FIELDS
    if unknown:     # a programming error here, not the client's
        raise TypeError(f"not SamplingParams fields: {sorted(unknown)}")
    merged = {**(defaults or {}), **given}
    drop = False
    max_tokens = merged.get("max_tokens", 16)
    if max_tokens is not None and not isinstance(max_tokens, bool) and isinstance(max_tokens, int):
        if max_tokens < 0:
            name = (rename or {}).get("max_tokens", "max_tokens")
            raise ApiError(f"{name} must be >= 0, got {max_tokens}", name)
        if max_tokens == 0:
            drop = True
            merged.update(max_tokens=1, temperature=0.0, constraint=None, stop=None, stop_token_ids=None,
                          logprobs=None if merged.get("logprobs") is None else 0)
    merged.setdefault("max_tokens", None)          # not given: up to max_model_len
    try:
        return Planned(SamplingParams(**merged), drop)
    except ValueError as e:
        raise from_value_error(e, rename) from None
    except TypeError as e:
        raise ApiError(str(e)) from None
