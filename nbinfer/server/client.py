"""RemoteLLM: nbinfer.LLM's interface (generate, chat, submit with streaming handles and cancel)
over HTTP, against `nbinfer serve`, vLLM's OpenAI-compatible server or SGLang's server.

    llm = RemoteLLM("http://127.0.0.1:8000", api_key=None, api="auto")
    llm.capabilities                        # what this server can do (RemoteCapabilities)
    llm.generate(["Hello"], SamplingParams(max_tokens=32))
    h = llm.submit("Hello", params, regex=r"[0-9]+")       # constraints are keyword arguments here
    for delta in h: ...; h.cancel()

Results are nbinfer's (vLLM-shaped) RequestOutput objects. A feature the server lacks raises
RemoteFeatureError naming the feature and the server.
"""
from __future__ import annotations

import itertools
from typing import Sequence as Seq

import httpx

from ..engine.handle import cancel_all
from ..engine.outputs import RequestOutput
from ..engine.sampling_params import SamplingParams
from .remote_capabilities import RemoteCapabilities, RemoteFeatureError, detect
from .remote_handle import RemoteHandle, RemoteRequestError, check_response
from .remote_protocols import Accumulated, OpenAIProtocol, OutputConstraint, SglangProtocol

__all__ = ["RemoteLLM", "RemoteCapabilities", "RemoteFeatureError", "RemoteRequestError", "RemoteHandle"]


class RemoteLLM:
    def __init__(self, url: str, api_key: str | None = None, api: str = "auto", model: str | None = None,
                 timeout: float = 600.0, transport: httpx.BaseTransport | None = None):
        """url: the server's root (an OpenAI base_url ending in /v1 is taken as its server's).
        api: "openai", "sglang" or "auto" (SGLang's API for SGLang servers, else OpenAI's).
        transport: an httpx transport (proxies, TLS settings, tests)."""
        self.url = url.rstrip("/")
        if self.url.endswith("/v1"):        # an OpenAI client's base_url names the server's /v1
            self.url = self.url[:-3]
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, transport=transport,
                                  timeout=httpx.Timeout(timeout, connect=10.0))
        try:
            self.capabilities: RemoteCapabilities = detect(self._http, self.url, api, model)
        except BaseException:
            self._http.close()
            raise
        self._protocol = (SglangProtocol if self.capabilities.api == "sglang" else OpenAIProtocol)(self.capabilities)
        self._ids = itertools.count()

    # -- LLM's interface --------------------------------------------------------------------------
    @property
    def max_model_len(self) -> int | None:
        return self.capabilities.max_model_len

    def submit(self, prompt, sampling_params: SamplingParams | None = None, *, request_id: str | None = None,
               regex: str | None = None, json_schema=None, choice: list[str] | None = None) -> RemoteHandle:
        """Start one request; returns at once. Iterate the handle for text deltas."""
        params = sampling_params or SamplingParams()
        path, body = self._protocol.completion(prompt, params, _constraint(regex, json_schema, choice))
        text = prompt if isinstance(prompt, str) else (prompt.get("prompt") if isinstance(prompt, dict) else None)
        return self._start(path, body, params, text, request_id)

    def submit_chat(self, messages: list[dict], sampling_params: SamplingParams | None = None, *,
                    request_id: str | None = None, regex: str | None = None, json_schema=None,
                    choice: list[str] | None = None) -> RemoteHandle:
        params = sampling_params or SamplingParams()
        _check_messages(messages)
        path, body = self._protocol.chat(messages, params, _constraint(regex, json_schema, choice))
        return self._start(path, body, params, None, request_id)

    def generate(self, prompts, sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
                 **constraint) -> list[RequestOutput]:
        """Every prompt is sent at once (the server batches them); outputs in prompt order."""
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        prompts = list(prompts)
        params = _per_prompt(sampling_params, len(prompts))
        return self._wait([lambda p=p, sp=sp: self.submit(p, sp, **constraint) for p, sp in zip(prompts, params)])

    def chat(self, messages, sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
             **constraint) -> list[RequestOutput]:
        """One conversation (a list of {"role", "content"}) or a list of them; the server's chat template."""
        conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        params = _per_prompt(sampling_params, len(conversations))
        return self._wait([lambda c=c, sp=sp: self.submit_chat(c, sp, **constraint)
                           for c, sp in zip(conversations, params)])

    def get_default_sampling_params(self) -> SamplingParams:
        """LLM's name. A remote server's generation_config recommendations are not visible over HTTP,
        so these are SamplingParams' own defaults (every request states its sampling values)."""
        return SamplingParams()

    # -- the server's tokenizer ---------------------------------------------------------------------
    def tokenize(self, text: str | None = None, messages: list[dict] | None = None, *,
                 add_special_tokens: bool = True, add_generation_prompt: bool = False) -> list[int]:
        """The server's token ids for `text`, or for `messages` rendered by its chat template.
        vLLM's /tokenize where the server has it; on SGLang (no /tokenize) a text's ids come back as
        the prompt of a /generate that generates nothing (its tokenizer adds special tokens its way)."""
        caps = self.capabilities
        if caps.tokenize:
            body = {"model": caps.model, "add_special_tokens": add_special_tokens}
            if messages is not None:
                body.update(messages=messages, add_generation_prompt=add_generation_prompt)
            else:
                body["prompt"] = text
            return list(self._post("/tokenize", body)["tokens"])
        if messages is None and caps.api == "sglang":
            meta = self._post("/generate", {"text": text, "sampling_params": {"max_new_tokens": 0},
                                            "return_logprob": True, "logprob_start_len": 0})["meta_info"]
            return [entry[1] for entry in meta["input_token_logprobs"]]
        caps.require("rendering the chat template (/tokenize with messages)" if messages is not None
                     else "tokenizing text (/tokenize)", False)

    def detokenize(self, token_ids: list[int]) -> str:
        """The server's text for these token ids (special tokens kept)."""
        self.capabilities.require("detokenizing (/detokenize)", self.capabilities.tokenize)
        return self._post("/detokenize", {"model": self.capabilities.model, "tokens": list(token_ids)})["prompt"]

    def flush_cache(self) -> None:
        """Empty the server's prefix cache (SGLang's /flush_cache; nbinfer serves it too)."""
        self.capabilities.require("flushing the prefix cache (/flush_cache)",
                                  self.capabilities.server in ("nbinfer", "sglang"))
        check_response(self._http.post("/flush_cache"))

    def _post(self, path: str, body: dict) -> dict:
        return check_response(self._http.post(path, json=body)).json()

    def metrics(self, timeout: float | None = None) -> dict[str, float]:
        """The server's /metrics, summed over label sets: {"vllm:num_requests_running": 1.0, ...}
        (SGLang's names are sglang:...)."""
        values: dict[str, float] = {}
        for name, _, value in self.metric_samples(timeout):
            values[name] = values.get(name, 0.0) + value
        return values

    def metric_samples(self, timeout: float | None = None) -> list[tuple[str, dict, float]]:
        """The server's /metrics as (name, labels, value) samples. `timeout`: seconds for this read
        (a dashboard polling a server that went away must not hang for the client's long timeout)."""
        from prometheus_client.parser import text_string_to_metric_families
        kwargs = {"timeout": timeout} if timeout is not None else {}
        text = check_response(self._http.get("/metrics", **kwargs)).text
        return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
                for s in family.samples]

    def close(self) -> None:
        self._http.close()

    def shutdown(self) -> None:     # LLM's name: a remote server keeps running; only the client closes
        self.close()

    def __enter__(self) -> "RemoteLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RemoteLLM({self.capabilities.describe()})"

    # -- internals --------------------------------------------------------------------------------
    def _start(self, path: str, body: dict, params: SamplingParams, text, request_id) -> RemoteHandle:
        rid = request_id or f"remote-{next(self._ids)}"
        acc = Accumulated(rid, text, params.n, params.logprobs is not None)
        return RemoteHandle(self._http, path, body, self._protocol, acc)

    def _wait(self, starts) -> list[RequestOutput]:
        handles: list[RemoteHandle] = []
        try:
            for start in starts:
                handles.append(start())
            return [h.result() for h in handles]
        except BaseException:
            cancel_all(handles)
            raise


def _constraint(regex, json_schema, choice) -> OutputConstraint | None:
    given = [(k, v) for k, v in (("regex", regex), ("json", json_schema), ("choice", choice)) if v is not None]
    if len(given) > 1:
        raise ValueError("give at most one of regex=, json_schema=, choice=")
    return OutputConstraint(*given[0]) if given else None


def _check_messages(messages) -> None:
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")


def _per_prompt(sampling_params, n: int) -> list[SamplingParams]:
    if sampling_params is None or isinstance(sampling_params, SamplingParams):
        return [sampling_params or SamplingParams()] * n
    params = list(sampling_params)
    if len(params) != n:
        raise ValueError(f"got {len(params)} SamplingParams for {n} prompts; pass one, or one per prompt")
    return params
