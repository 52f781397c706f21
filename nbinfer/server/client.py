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
from .remote_handle import RemoteHandle, RemoteRequestError, _error_message
from .remote_protocols import Accumulated, OpenAIProtocol, OutputConstraint, SglangProtocol

__all__ = ["RemoteLLM", "RemoteCapabilities", "RemoteFeatureError", "RemoteRequestError", "RemoteHandle"]


class RemoteLLM:
    def __init__(self, url: str, api_key: str | None = None, api: str = "auto", model: str | None = None,
                 timeout: float = 600.0, transport: httpx.BaseTransport | None = None):
        """api: "openai", "sglang" or "auto" (SGLang's API for SGLang servers, else OpenAI's).
        transport: an httpx transport (proxies, TLS settings, tests)."""
        self.url = url.rstrip("/")
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

    def metrics(self) -> dict[str, float]:
        """The server's /metrics, summed over label sets: {"vllm:num_requests_running": 1.0, ...}
        (SGLang's names are sglang:...)."""
        from prometheus_client.parser import text_string_to_metric_families
        r = self._http.get("/metrics")
        if r.status_code != 200:
            raise RemoteRequestError(_error_message(r))
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(r.text):
            for sample in family.samples:
                values[sample.name] = values.get(sample.name, 0.0) + sample.value
        return values

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
