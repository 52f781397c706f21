"""Response bodies of the OpenAI-compatible API, shaped as vLLM writes them."""
from __future__ import annotations

import time
import uuid

from ..engine.outputs import CompletionOutput, RequestOutput


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def usage(outputs: list[RequestOutput], drop_output: bool = False) -> dict:
    prompt = sum(len(o.prompt_token_ids) for o in outputs)
    completion = 0 if drop_output else sum(len(c.token_ids) for o in outputs for c in o.outputs)
    cached = sum(o.num_cached_tokens for o in outputs)
    return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": cached}}


def finish(c: CompletionOutput, drop_output: bool = False) -> tuple[str | None, object]:
    if drop_output:
        return "length", None
    return c.finish_reason, c.stop_reason


def _token(lp, tid: int, as_ids: bool = False) -> str:
    if as_ids:
        return f"token_id:{tid}"
    return lp.decoded_token if lp.decoded_token is not None else str(tid)


def prompt_logprobs_json(out: RequestOutput) -> list | None:
    """vLLM's prompt_logprobs: per prompt position, None or {token id: {logprob, rank, decoded_token}}."""
    if out.prompt_logprobs is None:
        return None
    return [None if entry is None else
            {str(tid): {"logprob": lp.logprob, "rank": lp.rank, "decoded_token": lp.decoded_token}
             for tid, lp in entry.items()}
            for entry in out.prompt_logprobs]


def completion_logprobs(token_ids: list[int], entries: list, start_offset: int, tokenizer,
                        as_ids: bool = False) -> dict:
    """Completions' logprobs: tokens, token_logprobs, top_logprobs ({token text: logprob}) and the
    character offset of each token in the choice's text. Positions without an entry (the first
    prompt token) have None."""
    tokens, token_lps, tops, offsets = [], [], [], []
    offset = start_offset
    for tid, entry in zip(token_ids, entries):
        if entry is None:
            tokens.append(f"token_id:{tid}" if as_ids else tokenizer.decode([tid]))
            token_lps.append(None)
            tops.append(None)
        else:
            lp = entry[tid]
            tokens.append(_token(lp, tid, as_ids))
            token_lps.append(lp.logprob)
            tops.append({_token(v, k, as_ids): v.logprob for k, v in entry.items()})
        offsets.append(offset)
        offset += len(tokens[-1])
    return {"text_offset": offsets, "token_logprobs": token_lps, "tokens": tokens, "top_logprobs": tops}


def merge_logprobs(a: dict, b: dict) -> dict:
    return {k: a[k] + b[k] for k in a}


def chat_logprobs(c: CompletionOutput, top: int, as_ids: bool = False) -> dict:
    content = []
    for tid, entry in zip(c.token_ids, c.logprobs or []):
        lp = entry[tid]
        text = _token(lp, tid, as_ids)
        ranked = sorted((v.rank, k, v) for k, v in entry.items() if v.rank is not None and v.rank <= top)
        content.append({"token": text, "logprob": lp.logprob, "bytes": list(text.encode("utf-8")),
                        "top_logprobs": [{"token": _token(v, k, as_ids), "logprob": v.logprob,
                                          "bytes": list(_token(v, k, as_ids).encode("utf-8"))}
                                         for _, k, v in ranked]})
    return {"content": content}


def decoded_prompt(out: RequestOutput, tokenizer) -> str:
    return out.prompt if out.prompt is not None else tokenizer.decode(out.prompt_token_ids)
