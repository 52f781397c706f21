"""SGLang's native routes: /generate, /get_model_info, /flush_cache, /server_info (and the old name
/get_server_info), /health_generate -- what SGLang's frontend (`sgl.RuntimeEndpoint`) calls."""
from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from ..version import __version__
from ..engine.outputs import CompletionOutput, RequestOutput
from ..engine.sampling_params import SamplingParams
from .bridge import Delta, Finished, submit_all
from .errors import ApiError
from .sglang_params import SGLANG_NAMES, GeneratePlan, Item, plan_generate
from .sglang_protocol import GenerateRequest
from .sse import sse_response
from .state import ServerState


def _finish_reason(item: Item, c: CompletionOutput) -> dict | None:
    if item.planned.drop_output:
        return {"type": "length", "length": 0}
    if c.finish_reason == "length":
        return {"type": "length", "length": len(c.token_ids)}
    if c.finish_reason == "stop":
        matched = c.stop_reason if c.stop_reason is not None else (c.token_ids[-1] if c.token_ids else None)
        return {"type": "stop", "matched": matched}
    if c.finish_reason == "abort":
        return {"type": "abort", "message": "the request was aborted"}
    return None


def _entry(lp, tid: int, with_text: bool) -> list:
    return [lp.logprob if lp is not None else None, tid, (lp.decoded_token if lp is not None else None)
            if with_text else None]


def _top(entry: dict, k: int, with_text: bool) -> list:
    ranked = sorted((lp.rank, tid, lp) for tid, lp in entry.items() if lp.rank is not None and lp.rank <= k)
    return [_entry(lp, tid, with_text) for _, tid, lp in ranked]


def _logprobs(item: Item, out: RequestOutput, c: CompletionOutput, tokenizer) -> dict:
    text = item.text_in_logprobs
    ids = out.prompt_token_ids
    first_text = tokenizer.decode([ids[item.start]]) if text and ids else None
    inputs = [[None, ids[item.start], first_text]] if ids else []
    input_tops = [None]
    for p in range(item.start + 1, len(ids)):
        entry = out.prompt_logprobs[p]
        inputs.append(_entry(entry[ids[p]], ids[p], text))
        input_tops.append(_top(entry, item.top, text))
    outs, out_tops = [], []
    if not item.planned.drop_output:
        for tid, entry in zip(c.token_ids, c.logprobs or []):
            outs.append(_entry(entry[tid], tid, text))
            out_tops.append(_top(entry, item.top, text))
    meta = {"input_token_logprobs": inputs, "output_token_logprobs": outs}
    if item.top:
        meta.update(input_top_logprobs=input_tops, output_top_logprobs=out_tops)
    return meta


def _result(item: Item, out: RequestOutput, c: CompletionOutput, n: int, tokenizer) -> dict:
    drop = item.planned.drop_output
    meta = {"id": item.rid if n == 1 else f"{item.rid}-{c.index}", "finish_reason": _finish_reason(item, c),
            "prompt_tokens": len(out.prompt_token_ids), "completion_tokens": 0 if drop else len(c.token_ids),
            "cached_tokens": out.num_cached_tokens}
    m = out.metrics
    if m is not None and m.finished_time is not None:
        meta["e2e_latency"] = m.finished_time - m.arrival_time
    if item.return_logprob:
        meta.update(_logprobs(item, out, c, tokenizer))
    return {"text": "" if drop else c.text, "output_ids": [] if drop else list(c.token_ids), "meta_info": meta}


def _position(plan: GeneratePlan, prompt: int, index: int) -> int:
    """SGLang orders a batch's n samples as [p0 s0, p1 s0, ..., p0 s1, p1 s1, ...]."""
    return index * len(plan.items) + prompt


def sglang_router(state: ServerState) -> APIRouter:
    r = APIRouter()

    @r.post("/generate")
    async def generate(body: GenerateRequest, request: Request):
        plan = plan_generate(body, state)
        items = plan.items
        submitted = await submit_all(state.llm, [it.prompt for it in items], [it.planned.params for it in items],
                                     [it.rid for it in items], rename=SGLANG_NAMES)
        if not body.stream:
            outputs = await submitted.outputs_unless_gone(request)
            state.metrics.record(outputs)
            results = [None] * (len(items) * plan.n)
            for i, (item, out) in enumerate(zip(items, outputs)):
                for c in out.outputs:
                    results[_position(plan, i, c.index)] = _result(item, out, c, plan.n, state.tokenizer)
            return results[0] if plan.single else results

        async def chunks():
            texts: dict[tuple[int, int], str] = {}
            outputs = []
            async for event in submitted.events():
                if isinstance(event, Delta):
                    item = items[event.prompt]
                    if item.planned.drop_output:
                        continue
                    key = (event.prompt, event.index)
                    texts[key] = texts.get(key, "") + event.text
                    chunk = {"text": texts[key], "meta_info": {
                        "id": item.rid if plan.n == 1 else f"{item.rid}-{event.index}", "finish_reason": None,
                        "prompt_tokens": len(item.prompt["prompt_token_ids"])}}
                    if not plan.single:
                        chunk["index"] = _position(plan, event.prompt, event.index)
                    yield chunk
                elif isinstance(event, Finished):
                    outputs.append(event.output)
                    for c in event.output.outputs:
                        chunk = _result(items[event.prompt], event.output, c, plan.n, state.tokenizer)
                        if not plan.single:
                            chunk["index"] = _position(plan, event.prompt, c.index)
                        yield chunk
            state.metrics.record(outputs)

        return sse_response(request, submitted, chunks())

    @r.get("/get_model_info")
    async def model_info():
        cfg = getattr(getattr(state.llm, "engine", None), "model_config", None)
        return {"model_path": state.model_path, "tokenizer_path": state.model_path, "is_generation": True,
                "served_model_name": state.model_name, "preferred_sampling_params": None,
                "architectures": [getattr(cfg, "architecture", None)] if cfg is not None else None}

    @r.api_route("/flush_cache", methods=["GET", "POST"])
    async def flush_cache():
        await anyio.to_thread.run_sync(state.llm.reset_prefix_cache)
        return PlainTextResponse("Cache flushed.\n")

    async def server_info():
        s = await anyio.to_thread.run_sync(state.llm.stats)
        cfg = state.llm.config
        return {"server": "nbinfer", "version": __version__, "model_path": state.model_path,
                "served_model_name": state.model_name, "max_model_len": s.max_model_len,
                "context_length": s.max_model_len, "page_size": s.block_size,
                "max_total_num_tokens": s.blocks_total * s.block_size, "max_running_requests": cfg.max_num_seqs,
                "device": s.device, "dtype": s.dtype, "enable_prefix_caching": cfg.enable_prefix_caching,
                "internal_states": [{"num_running_reqs": s.num_running, "num_waiting_reqs": s.num_waiting,
                                     "kv_blocks_free": s.blocks_free, "kv_blocks_used": s.blocks_used,
                                     "kv_blocks_cached": s.blocks_cached,
                                     "decode_throughput": s.decode_tokens_per_s}]}

    r.add_api_route("/server_info", server_info, methods=["GET"])
    r.add_api_route("/get_server_info", server_info, methods=["GET"])

    @r.get("/health_generate")
    async def health_generate():
        """Healthy when the engine generates one token."""
        try:
            submitted = await submit_all(state.llm, [{"prompt_token_ids": [state.tokenizer.bos_token_id or 0]}],
                                         [SamplingParams(max_tokens=1, temperature=0.0)], [None])
            with anyio.fail_after(60):
                await submitted.outputs()
        except (ApiError, TimeoutError) as e:
            raise ApiError(f"the engine cannot generate: {getattr(e, 'message', e)}", status=503) from None
        return PlainTextResponse("")

    return r
