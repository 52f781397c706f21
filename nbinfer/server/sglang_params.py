"""SGLang /generate bodies -> one engine request per prompt (n samples each), with SGLang's
semantics for batches, per-prompt options and prompt log-probs."""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from .errors import ApiError
from .params import Planned, plan
from .sglang_protocol import GenerateRequest, SglSamplingParams
from .state import ServerState

# engine field -> SGLang's name, for error messages
SGLANG_NAMES = {"max_tokens": "max_new_tokens", "prompt_logprobs": "top_logprobs_num",
                "logprobs": "top_logprobs_num", "seed": "sampling_seed"}


@dataclass
class Item:
    """One prompt of a /generate call."""
    prompt: dict                 # what the engine gets: {"prompt"?, "prompt_token_ids"}
    planned: Planned
    rid: str
    max_new_tokens: int | None
    return_logprob: bool
    start: int                   # SGLang's logprob_start_len, resolved (input logprobs from here)
    top: int                     # top_logprobs_num
    text_in_logprobs: bool


@dataclass
class GeneratePlan:
    items: list[Item]
    single: bool                 # answer with one object rather than a list
    n: int


def _per_prompt(value, count: int, field: str, default):
    """A scalar for every prompt, or a list of one per prompt (null = the default)."""
    if isinstance(value, list):
        if len(value) == 1 and count > 1:
            value = value * count
        if len(value) != count:
            raise ApiError(f"{field} has {len(value)} values for {count} prompts", field)
        return [default if v is None else v for v in value]
    return [default if value is None else value] * count


def _refuse(body: GenerateRequest) -> None:
    for name in ("image_data", "video_data", "audio_data", "input_embeds", "lora_path", "custom_logit_processor",
                 "token_ids_logprob"):
        value = getattr(body, name)
        if value not in (None, [], [None]):
            raise ApiError(f"{name} is not supported by nbinfer", name)


def _encode(state: ServerState, text: str) -> list[int]:
    """As nbinfer's in-process SGL backend does: a text that already starts with BOS (a chat template
    wrote it) gets no second one."""
    bos = getattr(state.tokenizer, "bos_token", None)
    return state.tokenizer.encode(text, add_special_tokens=not (bos and text.startswith(bos)))


def _prompts(body: GenerateRequest, state: ServerState) -> tuple[list[dict], bool]:
    if (body.text is None) == (body.input_ids is None):
        raise ApiError("give exactly one of text or input_ids", "text")
    if body.text is not None:
        texts = [body.text] if isinstance(body.text, str) else body.text
        if not texts:
            raise ApiError("text must not be an empty list", "text")
        return [{"prompt": t, "prompt_token_ids": _encode(state, t)} for t in texts], isinstance(body.text, str)
    ids = body.input_ids
    if not ids:
        raise ApiError("input_ids must not be empty", "input_ids")
    single = isinstance(ids[0], int)
    batch = [ids] if single else ids
    for i, row in enumerate(batch):
        if not row:
            raise ApiError(f"input_ids[{i}] is empty", "input_ids")
    return [{"prompt_token_ids": list(row)} for row in batch], single


def _stop_token_ids(sp: SglSamplingParams, state: ServerState) -> list[int] | None:
    """SGLang matches stop strings against text decoded with special tokens, so a stop string that
    is a special token (the frontend's "<|im_end|>") stops at that token even when it is not shown."""
    ids = list(sp.stop_token_ids or [])
    stops = [sp.stop] if isinstance(sp.stop, str) else (sp.stop or [])
    special = getattr(state.tokenizer, "all_special_tokens", []) or []
    for s in stops:
        if s in special:
            ids.append(state.tokenizer.convert_tokens_to_ids(s))
    return ids or None


def _sampling(sp: SglSamplingParams, state: ServerState, top: int, start_len: int | None,
              return_logprob: bool) -> Planned:
    for name in ("ebnf", "structural_tag"):
        if getattr(sp, name) is not None:
            raise ApiError(f"sampling_params.{name} is not supported by nbinfer; use regex or json_schema",
                           f"sampling_params.{name}")
    if sp.logit_bias:
        raise ApiError("sampling_params.logit_bias is not supported by nbinfer", "sampling_params.logit_bias")
    if sp.regex is not None and sp.json_schema is not None:
        raise ApiError("give at most one of sampling_params.regex and sampling_params.json_schema",
                       "sampling_params.json_schema")
    if sp.min_new_tokens < 0 or (sp.max_new_tokens is not None and sp.min_new_tokens > max(sp.max_new_tokens, 0)):
        raise ApiError(f"min_new_tokens must be in [0, max_new_tokens], got {sp.min_new_tokens}", "min_new_tokens")
    b = state.constraints
    grammar = (b.regex(sp.regex, "sampling_params.regex") if sp.regex is not None else
               b.json_schema(sp.json_schema, "sampling_params.json_schema") if sp.json_schema is not None else None)
    stop_ids = _stop_token_ids(sp, state)
    return plan(dict(
        max_tokens=sp.max_new_tokens, temperature=sp.temperature, top_p=sp.top_p, top_k=sp.top_k, min_p=sp.min_p,
        frequency_penalty=sp.frequency_penalty, presence_penalty=sp.presence_penalty,
        repetition_penalty=sp.repetition_penalty, stop=sp.stop, stop_token_ids=stop_ids, ignore_eos=sp.ignore_eos,
        skip_special_tokens=sp.skip_special_tokens, include_stop_str_in_output=sp.no_stop_trim, n=sp.n,
        seed=sp.sampling_seed, logprobs=top if return_logprob else None,
        prompt_logprobs=top if start_len is not None else None,
        logprob_start_len=start_len or 0,
        constraint=b.with_min_tokens(grammar, sp.min_new_tokens, stop_ids)), rename=SGLANG_NAMES)


def plan_generate(body: GenerateRequest, state: ServerState) -> GeneratePlan:
    _refuse(body)
    prompts, single = _prompts(body, state)
    count = len(prompts)
    sps = body.sampling_params
    if isinstance(sps, list):
        if len(sps) != count:
            raise ApiError(f"sampling_params has {len(sps)} entries for {count} prompts", "sampling_params")
    else:
        sps = [sps or SglSamplingParams()] * count
    ns = {sp.n for sp in sps}
    if len(ns) > 1:
        raise ApiError("every prompt of a batch must have the same sampling_params.n", "sampling_params.n")
    n = ns.pop()
    rids = _per_prompt(body.rid if isinstance(body.rid, list) else None, count, "rid", None)
    if isinstance(body.rid, str):
        if count > 1:
            raise ApiError("rid must be a list of one id per prompt for a batch", "rid")
        rids = [body.rid]
    rids = [r or uuid.uuid4().hex for r in rids]
    flags = _per_prompt(body.return_logprob, count, "return_logprob", False)
    starts = _per_prompt(body.logprob_start_len, count, "logprob_start_len", -1)
    tops = _per_prompt(body.top_logprobs_num, count, "top_logprobs_num", 0)
    texts = _per_prompt(body.return_text_in_logprobs, count, "return_text_in_logprobs", False)
    items = []
    for prompt, sp, rid, want, start, top, text in zip(prompts, sps, rids, flags, starts, tops, texts):
        length = len(prompt["prompt_token_ids"])
        if top < 0:
            raise ApiError(f"top_logprobs_num must be >= 0, got {top}", "top_logprobs_num")
        if start == -1 or not want:
            start = max(length - 1, 0)
        elif not 0 <= start < length:
            raise ApiError(f"logprob_start_len={start} must be in [0, {length}) for a prompt of {length} tokens",
                           "logprob_start_len")
        # the engine computes log-probs for prompt positions >= start + 1 (SGLang's first entry is null)
        engine_start = start + 1 if want and start + 1 < length else None
        items.append(Item(prompt, _sampling(sp, state, top, engine_start, want), rid, sp.max_new_tokens,
                          bool(want), start, top, bool(text)))
    return GeneratePlan(items, single and n == 1, n)
