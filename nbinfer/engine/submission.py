"""What submit() checks in the caller's thread before a request reaches the engine: the prompt, as
text or token ids, and the sampling params against this model. Every failure is a ValueError the
caller sees at once; the engine thread never meets bad input."""
from __future__ import annotations

from .sampling_params import SamplingParams


class Intake:
    def __init__(self, tokenizer, max_model_len: int, vocab_size: int, max_num_seqs: int):
        self.tokenizer, self.max_model_len = tokenizer, max_model_len
        self.vocab_size, self.max_num_seqs = vocab_size, max_num_seqs

    def __call__(self, prompt, params: SamplingParams) -> tuple[str | None, list[int], int]:
        """(prompt text or None, token ids, max_tokens resolved) of a request this engine can serve."""
        if not isinstance(params, SamplingParams):
            raise TypeError(f"sampling params must be a SamplingParams, got {type(params).__name__}")
        text, ids = tokenize(self.tokenizer, prompt)
        return text, ids, check_request(ids, params, self.max_model_len, self.vocab_size, self.max_num_seqs)


def tokenize(tokenizer, prompt) -> tuple[str | None, list[int]]:
    """(prompt text or None, token ids) of a str, {"prompt": str} or {"prompt_token_ids": [...]}."""
    if isinstance(prompt, str):
        return prompt, encode(tokenizer, prompt)
    if isinstance(prompt, dict):
        if "prompt_token_ids" in prompt:
            ids = prompt["prompt_token_ids"]
            if not isinstance(ids, (list, tuple)):
                raise ValueError("prompt_token_ids must be a list of integers")
            return prompt.get("prompt"), list(ids)
        if "prompt" in prompt and isinstance(prompt["prompt"], str):
            return prompt["prompt"], encode(tokenizer, prompt["prompt"])
        raise ValueError("a dict prompt needs 'prompt' (str) or 'prompt_token_ids' (list of int)")
    raise ValueError(f"prompt must be a str or a dict with 'prompt_token_ids', got {type(prompt).__name__}")


def encode(tokenizer, text: str, **kwargs) -> list[int]:
    """Token ids of a text prompt. An empty one is refused (as vLLM does), though the tokenizer would
    give it a BOS; so is text no tokenizer can encode. A prompt over the model's length is refused
    by check_request, so transformers' own warning about it stays quiet (verbose=False)."""
    if text == "":
        raise ValueError("prompt is empty: it must have at least one token")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"prompt is not valid text: it holds the lone surrogate {text[e.start]!r} at "
                         f"character {e.start}") from None
    return tokenizer.encode(text, verbose=False, **kwargs)


def check_request(ids: list[int], params: SamplingParams, max_model_len: int, vocab: int,
                  max_num_seqs: int) -> int:
    """Refuse what this engine cannot serve; returns max_tokens resolved (never past max_model_len)."""
    if params.n > max_num_seqs:
        raise ValueError(f"SamplingParams.n={params.n} is more than max_num_seqs={max_num_seqs}: a request's "
                         "n samples run side by side in one batch; lower n or load with a larger max_num_seqs")
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
