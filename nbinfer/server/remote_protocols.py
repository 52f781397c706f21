"""Request bodies and stream parsing for the two remote APIs, into nbinfer's own result types.

Both always stream (so a cancel closes the connection and the server aborts the request), and both
fill one `Accumulated` per request, from which a vLLM-shaped RequestOutput is built.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..engine.outputs import CompletionOutput, Logprob, RequestOutput
from ..engine.sampling_params import SamplingParams
from .remote_capabilities import RemoteCapabilities


@dataclass(frozen=True)
class OutputConstraint:
    """What RemoteLLM.submit(regex=..., json_schema=..., choice=...) asked for."""
    kind: str              # "regex" | "json" | "choice"
    value: object


@dataclass
class _Output:
    text: str = ""
    token_ids: list = field(default_factory=list)
    logprobs: list | None = None
    finish_reason: str | None = None
    stop_reason: object = None


@dataclass
class Accumulated:
    request_id: str
    prompt: str | None
    n: int
    want_logprobs: bool
    prompt_token_ids: list = field(default_factory=list)
    prompt_logprobs: list | None = None
    num_cached_tokens: int = 0
    outputs: dict = field(default_factory=dict)

    def out(self, index: int) -> _Output:
        if index not in self.outputs:
            self.outputs[index] = _Output(logprobs=[] if self.want_logprobs else None)
        return self.outputs[index]

    def result(self, aborted: bool = False) -> RequestOutput:
        outs = []
        for i in range(self.n):
            o = self.out(i)
            reason = o.finish_reason or ("abort" if aborted else None)
            cumulative = (sum(e[t].logprob for t, e in zip(o.token_ids, o.logprobs) if t in e)
                          if o.logprobs else None)
            outs.append(CompletionOutput(i, o.text, o.token_ids, cumulative, o.logprobs, reason, o.stop_reason))
        return RequestOutput(self.request_id, self.prompt, self.prompt_token_ids, self.prompt_logprobs, outs,
                             finished=True)


def _token_id(text: str) -> int | None:
    """vLLM's return_tokens_as_token_ids form: "token_id:123"."""
    if isinstance(text, str) and text.startswith("token_id:"):
        try:
            return int(text[len("token_id:"):])
        except ValueError:
            return None
    return None


class OpenAIProtocol:
    """/v1/completions and /v1/chat/completions, as vLLM (and nbinfer) serve them."""

    def __init__(self, caps: RemoteCapabilities):
        self.caps = caps

    def _sampling(self, p: SamplingParams, constraint: OutputConstraint | None) -> dict:
        caps, plain = self.caps, SamplingParams()
        body = {"model": caps.model, "max_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p,
                "n": p.n, "seed": p.seed, "presence_penalty": p.presence_penalty,
                "frequency_penalty": p.frequency_penalty, "stream": True,
                "stream_options": {"include_usage": True}}
        if p.stop:
            body["stop"] = list(p.stop)
        extras = {name: getattr(p, name) for name in ("top_k", "min_p", "repetition_penalty", "ignore_eos",
                                                      "stop_token_ids", "skip_special_tokens",
                                                      "include_stop_str_in_output", "prompt_logprobs")
                  if getattr(p, name) != getattr(plain, name)}
        if extras:
            caps.require(f"sampling option(s) {', '.join(sorted(extras))}", caps.sampling_extras)
            body.update(extras)
        if p.prompt_logprobs is not None:      # the API has no start position: every position comes back
            caps.require("prompt logprobs", caps.prompt_logprobs)
            # vLLM leaves prompt_logprobs out of streams: ask for one answer (a cancel still closes it)
            body.update(stream=False)
            body.pop("stream_options")
        if p.constraint is not None:
            raise ValueError("SamplingParams.constraint holds a grammar compiled for a local tokenizer; "
                             "pass regex=, json_schema= or choice= to the remote client instead")
        if constraint is not None:
            caps.require(f"constrained output ({constraint.kind})", caps.constraints)
            if caps.structured_outputs_field == "guided":
                body[f"guided_{constraint.kind}"] = constraint.value
            else:
                body["structured_outputs"] = {constraint.kind: constraint.value}
        if caps.token_ids:
            body.update(return_token_ids=True, return_tokens_as_token_ids=True)
        return body

    def completion(self, prompt, p: SamplingParams, constraint) -> tuple[str, dict]:
        body = self._sampling(p, constraint)
        if isinstance(prompt, dict):
            if "prompt_token_ids" in prompt:
                self.caps.require("token-id prompts", self.caps.token_ids)
                body["prompt"] = list(prompt["prompt_token_ids"])
            else:
                body["prompt"] = prompt["prompt"]
        else:
            body["prompt"] = prompt
        if p.logprobs is not None:
            self.caps.require("logprobs with token ids", self.caps.token_ids)
            body["logprobs"] = p.logprobs
        return "/v1/completions", body

    def chat(self, messages: list[dict], p: SamplingParams, constraint) -> tuple[str, dict]:
        body = self._sampling(p, constraint)
        body["messages"] = messages
        if p.logprobs is not None:
            self.caps.require("logprobs with token ids", self.caps.token_ids)
            body.update(logprobs=True, top_logprobs=p.logprobs)
        return "/v1/chat/completions", body

    def parse(self, chunk: dict, acc: Accumulated):
        """One SSE chunk -> (index, text delta) events; fills acc."""
        if chunk.get("usage"):
            acc.num_cached_tokens = ((chunk["usage"].get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        for ch in chunk.get("choices") or []:
            o = acc.out(ch.get("index", 0))
            if ch.get("prompt_token_ids") and not acc.prompt_token_ids:
                acc.prompt_token_ids = list(ch["prompt_token_ids"])
            if ch.get("prompt_logprobs") is not None and acc.prompt_logprobs is None:
                acc.prompt_logprobs = [None if e is None else {
                    int(k): Logprob(v["logprob"], v.get("rank"), v.get("decoded_token")) for k, v in e.items()}
                    for e in ch["prompt_logprobs"]]
            if "delta" in ch:
                delta = ch["delta"].get("content")
            elif "message" in ch:
                delta = (ch["message"] or {}).get("content")
            else:
                delta = ch.get("text")
            if delta:
                o.text += delta
                yield ch.get("index", 0), delta
            if ch.get("token_ids"):
                o.token_ids += list(ch["token_ids"])
            if ch.get("logprobs") and o.logprobs is not None:
                o.logprobs += _openai_logprobs(ch["logprobs"])
            if ch.get("finish_reason"):
                o.finish_reason, o.stop_reason = ch["finish_reason"], ch.get("stop_reason")


def _openai_logprobs(lp: dict) -> list[dict]:
    entries = []
    if "content" in lp:                           # chat
        for item in lp["content"] or []:
            tid = _token_id(item["token"])
            entries.append(_ranked({tid: item["logprob"]}, [(_token_id(t["token"]), t["logprob"])
                                                             for t in item.get("top_logprobs") or []]))
        return entries
    for tok, value, tops in zip(lp.get("tokens") or [], lp.get("token_logprobs") or [], lp.get("top_logprobs") or []):
        ranked = sorted((tops or {}).items(), key=lambda kv: -kv[1])
        entries.append(_ranked({_token_id(tok): value}, [(_token_id(t), v) for t, v in ranked]))
    return entries


def _ranked(chosen: dict, top: list) -> dict:
    """{token id: Logprob}: the chosen token (rank known if it is among the top), then the top ones
    ranked 1, 2, ... in the order given."""
    (tid, value), = chosen.items()
    entry = {tid: Logprob(value, None, None)}
    for rank, (t, v) in enumerate(top, 1):
        entry[t] = Logprob(entry[t].logprob if t in entry else v, rank, None)
    return entry


class SglangProtocol:
    """SGLang's /generate (and its /v1/chat/completions for chat)."""

    def __init__(self, caps: RemoteCapabilities):
        self.caps = caps
        self._chat = OpenAIProtocol(caps)
        self._cumulative: dict[tuple[str, int], int] = {}

    def completion(self, prompt, p: SamplingParams, constraint) -> tuple[str, dict]:
        if p.constraint is not None:
            raise ValueError("SamplingParams.constraint holds a grammar compiled for a local tokenizer; "
                             "pass regex=, json_schema= or choice= to the remote client instead")
        sp = {"max_new_tokens": p.max_tokens, "temperature": p.temperature, "top_p": p.top_p, "top_k": p.top_k,
              "min_p": p.min_p, "frequency_penalty": p.frequency_penalty, "presence_penalty": p.presence_penalty,
              "repetition_penalty": p.repetition_penalty, "ignore_eos": p.ignore_eos, "n": p.n,
              "skip_special_tokens": p.skip_special_tokens, "no_stop_trim": p.include_stop_str_in_output}
        if p.stop:
            sp["stop"] = list(p.stop)
        if p.stop_token_ids:
            sp["stop_token_ids"] = list(p.stop_token_ids)
        if p.seed is not None:
            sp["sampling_seed"] = p.seed
        if constraint is not None:
            if constraint.kind == "regex":
                sp["regex"] = constraint.value
            elif constraint.kind == "json":
                sp["json_schema"] = constraint.value if isinstance(constraint.value, str) else json.dumps(constraint.value)
            else:
                import re
                sp["regex"] = "(" + "|".join(re.escape(c) for c in constraint.value) + ")"
        body = {"sampling_params": sp, "stream": True, "return_text_in_logprobs": True}
        if isinstance(prompt, dict) and "prompt_token_ids" in prompt:
            body["input_ids"] = list(prompt["prompt_token_ids"])
        else:
            body["text"] = prompt["prompt"] if isinstance(prompt, dict) else prompt
        if p.logprobs is not None or p.prompt_logprobs is not None:
            # SGLang's first input entry (at logprob_start_len) has no log-prob: start one earlier so
            # that position p.logprob_start_len has one, as it has in the engine's prompt_logprobs
            start = max(p.logprob_start_len - 1, 0) if p.prompt_logprobs is not None else -1
            body.update(return_logprob=True, top_logprobs_num=max(p.logprobs or 0, p.prompt_logprobs or 0),
                        logprob_start_len=start)
        return "/generate", body

    def chat(self, messages: list[dict], p: SamplingParams, constraint) -> tuple[str, dict]:
        return self._chat.chat(messages, p, constraint)

    def parse(self, chunk: dict, acc: Accumulated):
        if "choices" in chunk:                  # a chat stream from SGLang's OpenAI API
            yield from self._chat.parse(chunk, acc)
            return
        index = chunk.get("index", 0) if acc.n > 1 else 0     # n > 1 comes back as a batch of n
        o = acc.out(index)
        text = chunk.get("text", "")
        if len(text) > len(o.text):
            delta = text[len(o.text):]
            o.text = text
            yield index, delta
        meta = chunk.get("meta_info") or {}
        if chunk.get("output_ids") is not None:
            o.token_ids = list(chunk["output_ids"])
        acc.num_cached_tokens = meta.get("cached_tokens", acc.num_cached_tokens)
        if meta.get("input_token_logprobs"):
            self._prompt_logprobs(meta, acc)
        if meta.get("output_token_logprobs") is not None and o.logprobs is not None:
            tops = meta.get("output_top_logprobs") or [None] * len(meta["output_token_logprobs"])
            o.logprobs = [_sgl_entry(e, top) for e, top in zip(meta["output_token_logprobs"], tops)]
            if not o.token_ids:
                o.token_ids = [e[1] for e in meta["output_token_logprobs"]]
        reason = meta.get("finish_reason")
        if reason:
            o.finish_reason = reason.get("type") if isinstance(reason, dict) else str(reason)
            o.stop_reason = reason.get("matched") if isinstance(reason, dict) else None

    def _prompt_logprobs(self, meta: dict, acc: Accumulated) -> None:
        items = meta["input_token_logprobs"]
        tops = meta.get("input_top_logprobs") or [None] * len(items)
        start = meta.get("prompt_tokens", len(items)) - len(items)
        acc.prompt_logprobs = [None] * start + [None if e[0] is None else _sgl_entry(e, top)
                                                for e, top in zip(items, tops)]
        if not acc.prompt_token_ids and start == 0:
            acc.prompt_token_ids = [e[1] for e in items]


def _sgl_entry(e: list, top: list | None) -> dict:
    entry = {e[1]: Logprob(e[0], None, e[2] if len(e) > 2 else None)}
    for rank, t in enumerate(top or [], 1):
        if t[1] in entry:
            entry[t[1]] = Logprob(entry[t[1]].logprob, rank, entry[t[1]].decoded_token)
        else:
            entry[t[1]] = Logprob(t[0], rank, t[2] if len(t) > 2 else None)
    return entry
