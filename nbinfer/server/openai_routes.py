"""OpenAI-compatible routes, as vLLM serves them: /v1/models, /v1/completions, /v1/chat/completions,
/tokenize, /detokenize, /version.

Streams send text as the engine produces it; the engine hands the server text deltas only, so when
a stream asks for logprobs they come with each choice's last chunk (the one carrying finish_reason).
"""
from __future__ import annotations

from fastapi import APIRouter, Request

from ..version import __version__
from .bridge import Delta, Finished, submit_all
from .errors import ApiError
from .openai_format import (chat_logprobs, completion_logprobs, decoded_prompt, finish, merge_logprobs,
                            new_id, now, prompt_logprobs_json, usage)
from .openai_params import chat_plan, chat_prompt, completion_plan, completion_prompts
from .openai_protocol import ChatCompletionRequest, CompletionRequest, DetokenizeRequest, TokenizeRequest
from .sse import sse_response
from .state import ServerState


def token_ids(out, c, body, planned) -> dict:
    """vLLM's return_token_ids: the prompt's and the choice's token ids."""
    if not body.return_token_ids:
        return {}
    return {"prompt_token_ids": list(out.prompt_token_ids), "token_ids": [] if planned.drop_output else list(c.token_ids)}


def _chunker(rid: str, kind: str, created: int, model: str):
    """A stream's chunk: the same id / object / created / model on each, these choices."""
    def chunk(choices: list, **extra) -> dict:
        return {"id": rid, "object": kind, "created": created, "model": model, "choices": choices, **extra}
    return chunk


def openai_router(state: ServerState) -> APIRouter:
    r = APIRouter()

    @r.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{
            "id": state.model_name, "object": "model", "created": int(state.started), "owned_by": "nbinfer",
            "root": state.model_path, "parent": None, "max_model_len": state.max_model_len, "permission": []}]}

    @r.get("/version")
    async def version():
        return {"version": __version__, "server": "nbinfer"}

    @r.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        state.check_model(body.model)
        prompts = completion_prompts(body, state)
        planned = completion_plan(body, state)
        rid = body.request_id or new_id("cmpl")
        ids = [f"{rid}-{i}" for i in range(len(prompts))]
        submitted = await submit_all(state.llm, prompts, [planned.params] * len(prompts), ids)
        n, created = body.n, now()

        def choice_text(out, c):
            prefix = decoded_prompt(out, state.tokenizer) if body.echo else ""
            return prefix + ("" if planned.drop_output else c.text)

        def choice_logprobs(out, c):
            if body.logprobs is None:
                return None
            ids, entries = ([], []) if planned.drop_output else (c.token_ids, c.logprobs)
            as_ids = body.return_tokens_as_token_ids
            if not body.echo:
                return completion_logprobs(ids, entries, 0, state.tokenizer, as_ids)
            pre = completion_logprobs(out.prompt_token_ids, out.prompt_logprobs or [None] * len(out.prompt_token_ids),
                                      0, state.tokenizer, as_ids)
            return merge_logprobs(pre, completion_logprobs(ids, entries, sum(len(t) for t in pre["tokens"]),
                                                           state.tokenizer, as_ids))

        if not body.stream:
            outputs = await submitted.outputs_unless_gone(request)
            state.metrics.record(outputs)
            choices = []
            for i, out in enumerate(outputs):
                for c in out.outputs:
                    reason, stop_reason = finish(c, planned.drop_output)
                    choices.append({"index": i * n + c.index, "text": choice_text(out, c),
                                    "logprobs": choice_logprobs(out, c), "finish_reason": reason,
                                    "stop_reason": stop_reason, "prompt_logprobs": prompt_logprobs_json(out),
                                    **token_ids(out, c, body, planned)})
            return {"id": rid, "object": "text_completion", "created": created, "model": state.model_name,
                    "choices": choices, "usage": usage(outputs, planned.drop_output), "system_fingerprint": None}

        include_usage = body.stream_options is not None and body.stream_options.include_usage

        chunk = _chunker(rid, "text_completion", created, state.model_name)

        async def chunks():
            outputs = []
            if body.echo:
                for i, prompt in enumerate(prompts):
                    text = prompt.get("prompt") or state.tokenizer.decode(prompt["prompt_token_ids"])
                    yield chunk([{"index": i * n + j, "text": text, "logprobs": None, "finish_reason": None,
                                  "stop_reason": None} for j in range(n)])
            async for event in submitted.events():
                if isinstance(event, Delta):
                    if not planned.drop_output:
                        yield chunk([{"index": event.prompt * n + event.index, "text": event.text,
                                      "logprobs": None, "finish_reason": None, "stop_reason": None}])
                elif isinstance(event, Finished):
                    out = event.output
                    outputs.append(out)
                    for c in out.outputs:
                        reason, stop_reason = finish(c, planned.drop_output)
                        yield chunk([{"index": event.prompt * n + c.index, "text": "",
                                      "logprobs": choice_logprobs(out, c), "finish_reason": reason,
                                      "stop_reason": stop_reason, "prompt_logprobs": prompt_logprobs_json(out),
                                      **token_ids(out, c, body, planned)}])
            state.metrics.record(outputs)
            if include_usage:
                yield chunk([], usage=usage(outputs, planned.drop_output))

        return sse_response(request, submitted, chunks())

    @r.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest, request: Request):
        state.check_model(body.model)
        prompt = chat_prompt(body, state)
        planned = chat_plan(body, state)
        rid = body.request_id or new_id("chatcmpl")
        submitted = await submit_all(state.llm, [prompt], [planned.params], [rid])
        created, top = now(), body.top_logprobs or 0

        def logprobs_of(c):
            if not body.logprobs:
                return None
            return {"content": []} if planned.drop_output else chat_logprobs(c, top, body.return_tokens_as_token_ids)

        if not body.stream:
            (out,) = await submitted.outputs_unless_gone(request)
            state.metrics.record([out])
            choices = []
            for c in out.outputs:
                reason, stop_reason = finish(c, planned.drop_output)
                choices.append({"index": c.index, "message": {
                    "role": "assistant", "content": "" if planned.drop_output else c.text, "tool_calls": []},
                    "logprobs": logprobs_of(c), "finish_reason": reason, "stop_reason": stop_reason,
                    **token_ids(out, c, body, planned)})
            return {"id": rid, "object": "chat.completion", "created": created, "model": state.model_name,
                    "choices": choices, "usage": usage([out], planned.drop_output),
                    "prompt_logprobs": prompt_logprobs_json(out), "system_fingerprint": None}

        include_usage = body.stream_options is not None and body.stream_options.include_usage

        chunk = _chunker(rid, "chat.completion.chunk", created, state.model_name)

        async def chunks():
            yield chunk([{"index": j, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                          "finish_reason": None} for j in range(body.n)])
            final = None
            async for event in submitted.events():
                if isinstance(event, Delta):
                    if not planned.drop_output:
                        yield chunk([{"index": event.index, "delta": {"content": event.text}, "logprobs": None,
                                      "finish_reason": None}])
                elif isinstance(event, Finished):
                    final = event.output
                    for c in final.outputs:
                        reason, stop_reason = finish(c, planned.drop_output)
                        yield chunk([{"index": c.index, "delta": {}, "logprobs": logprobs_of(c),
                                      "finish_reason": reason, "stop_reason": stop_reason,
                                      "prompt_logprobs": prompt_logprobs_json(final),
                                      **token_ids(final, c, body, planned)}])
            state.metrics.record([final])
            if include_usage:
                yield chunk([], usage=usage([final], planned.drop_output))

        return sse_response(request, submitted, chunks())

    @r.post("/tokenize")
    async def tokenize(body: TokenizeRequest):
        state.check_model(body.model)
        if (body.prompt is None) == (body.messages is None):
            raise ApiError("give exactly one of prompt or messages", "prompt")
        if body.messages is not None:
            conversation = [{"role": m.role, "content": m.content if isinstance(m.content, str) or m.content is None
                             else "\n".join(p.text for p in m.content)} for m in body.messages]
            try:
                ids = state.llm.apply_chat_template(conversation, None, body.add_generation_prompt)["prompt_token_ids"]
            except RuntimeError:
                raise
            except Exception as e:
                raise ApiError(f"messages: the chat template cannot render them: {e}".splitlines()[0],
                               "messages") from None
        else:
            ids = state.tokenizer.encode(body.prompt, add_special_tokens=body.add_special_tokens)
        strs = state.tokenizer.convert_ids_to_tokens(ids) if body.return_token_strs else None
        return {"count": len(ids), "max_model_len": state.max_model_len, "tokens": ids, "token_strs": strs}

    @r.post("/detokenize")
    async def detokenize(body: DetokenizeRequest):
        state.check_model(body.model)
        vocab = state.constraints.vocab_size
        bad = [t for t in body.tokens if not 0 <= t < vocab]
        if bad:
            raise ApiError(f"tokens has ids outside the vocabulary [0, {vocab}): {bad[:5]}", "tokens")
        return {"prompt": state.tokenizer.decode(body.tokens)}

    return r
