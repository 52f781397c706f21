"""What submit() checks in the caller's thread before a request reaches the engine: the prompt, as
text or token ids, and the sampling params against this model. Every failure is a ValueError the
caller sees at once; the engine thread never meets bad input."""
from __future__ import annotations

from .sampling_params import SamplingParams


def tokenize(tokenizer, prompt) -> tuple[str | None, list[int]]:
    """(prompt text or None, token ids) of a str, {"prompt": str} or {"prompt_token_ids": [...]}."""
    if isinstance(prompt, str):
        return prompt, tokenizer.encode(prompt)
    if isinstance(prompt, dict):
        if "prompt_token_ids" in prompt:
            ids = prompt["prompt_token_ids"]
            if not isinstance(ids, (list, tuple)):
                raise ValueError("prompt_token_ids must be a list of integers")
            return prompt.get("prompt"), list(ids)
        if "prompt" in prompt and isinstance(prompt["prompt"], str):
            return prompt["prompt"], tokenizer.encode(prompt["prompt"])
        raise ValueError("a dict prompt needs 'prompt' (str) or 'prompt_token_ids' (list of int)")
    raise ValueError(f"prompt must be a str or a dict with 'prompt_token_ids', got {type(prompt).__name__}")


def check_request(ids: list[int], params: SamplingParams, max_model_len: int, vocab: int) -> int:
    """Refuse what this engine cannot serve; returns max_tokens resolved (never past max_model_len)."""
    if not ids:
        raise ValueError("prompt is empty: it must have at least one token")
    if len(ids) >= max_model_len:
        raise ValueError(f"prompt has {len(ids)} tokens; the limit is max_model_len - 1 = {max_model_len - 1}")
    if any((not isinstance(t, int)) or t < 0 or t >= vocab for t in ids):
        raise ValueError(f"prompt_token_ids must be integers in [0, {vocab})")
    bad_stop = [t for t in params.stop_token_ids if t >= vocab]
    if bad_stop:
        raise ValueError(f"SamplingParams.stop_token_ids has ids outside the vocabulary: {bad_stop}")
    for name in ("logprobs", "prompt_logprobs"):
        if (getattr(params, name) or 0) > vocab:
            raise ValueError(f"SamplingParams.{name}={getattr(params, name)} exceeds the vocabulary size {vocab}")
    room = max_model_len - len(ids)
    return room if params.max_tokens is None else min(params.max_tokens, room)
