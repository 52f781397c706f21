"""OpenAI / vLLM request fields -> engine prompts and SamplingParams (and the 400s on the way)."""
from __future__ import annotations

from .errors import ApiError
from .openai_protocol import ChatCompletionRequest, CompletionRequest, SamplingFields
from .params import Planned, plan
from .state import ServerState

# top log-probs per token a request may ask for, as vLLM's server caps them (max_logprobs): the engine
# takes up to the vocabulary, but 49k entries a token in one JSON response is a client's mistake
MAX_LOGPROBS = 20


def refuse_unsupported(req: SamplingFields) -> None:
    """Fields nbinfer cannot honour are refused by name: silently ignoring them would change the
    output behind the client's back."""
    if req.logit_bias:
        raise ApiError("logit_bias is not supported by nbinfer", "logit_bias")
    if req.best_of is not None and req.best_of != req.n:
        raise ApiError("best_of different from n is not supported by nbinfer", "best_of")
    if getattr(req, "suffix", None):
        raise ApiError("suffix is not supported by nbinfer", "suffix")
    if getattr(req, "tools", None):
        raise ApiError("tool calling (tools) is not supported by nbinfer", "tools")
    if getattr(req, "tool_choice", None) not in (None, "none"):
        raise ApiError("tool_choice is not supported by nbinfer", "tool_choice")
    so = req.structured_outputs
    if so is not None and so.grammar is not None:
        raise ApiError("structured_outputs.grammar (EBNF) is not supported by nbinfer; use regex, json or "
                       "choice", "structured_outputs.grammar")
    if so is not None and so.structural_tag is not None:
        raise ApiError("structured_outputs.structural_tag is not supported by nbinfer",
                       "structured_outputs.structural_tag")


def constraint_for(req: SamplingFields, state: ServerState):
    """The grammar asked for by structured_outputs / guided_* / response_format (at most one)."""
    b = state.constraints
    asked = []
    so = req.structured_outputs
    if so is not None:
        for name, value in (("regex", so.regex), ("json", so.json_), ("choice", so.choice)):
            if value is not None:
                asked.append((f"structured_outputs.{name}", name, value))
        if so.json_object:
            asked.append(("structured_outputs.json_object", "json", {"type": "object"}))
    for name, kind in (("guided_regex", "regex"), ("guided_json", "json"), ("guided_choice", "choice")):
        value = getattr(req, name)
        if value is not None:
            asked.append((name, kind, value))
    rf = req.response_format
    if rf is not None and rf.type == "json_object":
        asked.append(("response_format", "json", {"type": "object"}))
    elif rf is not None and rf.type == "json_schema":
        if rf.json_schema is None or rf.json_schema.schema_ is None:
            raise ApiError("response_format.json_schema.schema is required for type json_schema",
                           "response_format.json_schema")
        asked.append(("response_format.json_schema.schema", "json", rf.json_schema.schema_))
    if not asked:
        return None
    if len(asked) > 1:
        raise ApiError(f"give at most one output constraint; got {', '.join(a[0] for a in asked)}", asked[1][0])
    field, kind, value = asked[0]
    if kind == "regex":
        return b.regex(value, field)
    if kind == "choice":
        return b.choice(value, field)
    return b.json_schema(value, field)


def sampling_plan(req: SamplingFields, state: ServerState, max_tokens, logprobs, prompt_logprobs) -> Planned:
    refuse_unsupported(req)
    for name, count in (("logprobs", logprobs), ("prompt_logprobs", req.prompt_logprobs)):
        if isinstance(count, int) and not isinstance(count, bool) and count > MAX_LOGPROBS:
            raise ApiError(f"{name} must be <= {MAX_LOGPROBS}, got {count}", name)
    grammar = constraint_for(req, state)
    if isinstance(req.min_tokens, int) and req.min_tokens < 0:
        raise ApiError(f"min_tokens must be >= 0, got {req.min_tokens}", "min_tokens")
    if max_tokens is not None and req.min_tokens > max_tokens > 0:
        raise ApiError(f"min_tokens ({req.min_tokens}) must be <= max_tokens ({max_tokens})", "min_tokens")
    constraint = state.constraints.with_min_tokens(grammar, req.min_tokens, req.stop_token_ids)
    return plan(dict(
        max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k, min_p=req.min_p,
        n=req.n, seed=req.seed, stop=req.stop, stop_token_ids=req.stop_token_ids, ignore_eos=req.ignore_eos,
        presence_penalty=req.presence_penalty, frequency_penalty=req.frequency_penalty,
        repetition_penalty=req.repetition_penalty, logprobs=logprobs, prompt_logprobs=prompt_logprobs,
        skip_special_tokens=req.skip_special_tokens, include_stop_str_in_output=req.include_stop_str_in_output,
        constraint=constraint), defaults=state.defaults)


def completion_prompts(req: CompletionRequest, state: ServerState) -> list:
    """prompt: a string, a list of strings, a list of token ids, or a list of lists of them."""
    p = req.prompt
    if isinstance(p, str):
        items = [p]
    elif not p:
        raise ApiError("prompt must not be an empty list", "prompt")
    elif isinstance(p[0], int):
        items = [p]
    else:
        items = list(p)
    prompts = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            # tokenized here, on the event loop's one thread: HF fast tokenizers are not safe to call
            # from many threads at once, and submits run on worker threads
            ids = state.tokenizer.encode(item, add_special_tokens=req.add_special_tokens)
            prompts.append({"prompt": item, "prompt_token_ids": ids})
        else:
            if not item:
                raise ApiError(f"prompt[{i}] is an empty list of token ids", "prompt")
            prompts.append({"prompt_token_ids": list(item)})
    return prompts


def completion_plan(req: CompletionRequest, state: ServerState) -> Planned:
    if req.echo and req.logprobs is not None:
        prompt_logprobs = max(req.logprobs, req.prompt_logprobs or 0)
    else:
        prompt_logprobs = req.prompt_logprobs
    return sampling_plan(req, state, req.max_tokens, req.logprobs, prompt_logprobs)


def chat_conversation(req: ChatCompletionRequest) -> list[dict]:
    if not req.messages:
        raise ApiError("messages must not be empty", "messages")
    conversation = []
    for m in req.messages:
        content = m.content
        if isinstance(content, list):
            content = "\n".join(part.text for part in content)
        message = {"role": m.role, "content": content or ""}
        if m.name is not None:
            message["name"] = m.name
        conversation.append(message)
    return conversation


def chat_prompt(req: ChatCompletionRequest, state: ServerState) -> dict:
    if req.continue_final_message and req.add_generation_prompt and "add_generation_prompt" in req.model_fields_set:
        raise ApiError("continue_final_message and add_generation_prompt cannot both be true",
                       "continue_final_message")
    try:
        return state.llm.apply_chat_template(chat_conversation(req), req.chat_template, req.add_generation_prompt,
                                             req.continue_final_message)
    except (ApiError, RuntimeError):      # RuntimeError: the engine is shut down (a 503)
        raise
    except Exception as e:      # no template, or the model's Jinja template refused these messages
        raise ApiError(f"messages: the chat template cannot render them: {str(e).splitlines()[0] if str(e) else e!r}",
                       "messages") from None


def chat_plan(req: ChatCompletionRequest, state: ServerState) -> Planned:
    if req.top_logprobs is not None and not req.logprobs:
        raise ApiError("top_logprobs needs logprobs: true", "top_logprobs")
    if req.top_logprobs is not None and not 0 <= req.top_logprobs <= MAX_LOGPROBS:
        raise ApiError(f"top_logprobs must be in [0, {MAX_LOGPROBS}], got {req.top_logprobs}", "top_logprobs")
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    logprobs = (req.top_logprobs or 0) if req.logprobs else None
    return sampling_plan(req, state, max_tokens, logprobs, req.prompt_logprobs)
