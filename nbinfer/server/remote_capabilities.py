"""What a remote server can do, found out once when a RemoteLLM connects.

A feature the server lacks is an error that names the feature and the server, never a silently
different result (an unconstrained output where a regex was asked for, a select without scores).
"""
from __future__ import annotations

from dataclasses import dataclass

import httpx

SERVERS = ("nbinfer", "vllm", "sglang", "openai-compatible")
APIS = ("openai", "sglang", "auto")


class RemoteFeatureError(RuntimeError):
    """The remote server cannot do what was asked."""


@dataclass(frozen=True)
class RemoteCapabilities:
    url: str
    server: str                  # one of SERVERS
    api: str                     # the API this client speaks to it: "openai" or "sglang"
    model: str
    max_model_len: int | None
    version: str | None = None
    prompt_logprobs: bool = False      # log-probs of prompt tokens (what SGL `select` needs)
    constraints: bool = False          # regex / JSON schema / choice enforced by the server
    token_ids: bool = False            # token-id prompts in, output token ids and logprob ids out
    sampling_extras: bool = False      # top_k, min_p, repetition_penalty, ignore_eos, stop_token_ids, ...
    tokenize: bool = False             # vLLM's /tokenize (text or chat messages) and /detokenize
    structured_outputs_field: str = "structured_outputs"   # vLLM < 0.11 names it guided_*

    def require(self, feature: str, available: bool) -> None:
        if not available:
            raise RemoteFeatureError(f"{feature} is not supported by the {self.server} server at {self.url} "
                                     f"(through its {self.api} API)")

    def describe(self) -> str:
        flags = [name for name in ("prompt_logprobs", "constraints", "token_ids", "sampling_extras", "tokenize")
                 if getattr(self, name)]
        return f"{self.server} {self.version or ''} at {self.url} ({self.api} API): {', '.join(flags) or 'plain text'}"


def _get_json(http: httpx.Client, path: str):
    try:
        r = http.get(path)
    except httpx.HTTPError:
        return None
    if r.status_code == 401:
        raise RemoteFeatureError(f"the server at {http.base_url} refused the API key (401)")
    if r.status_code != 200:
        return None
    try:
        return r.json()
    except ValueError:
        return None


def _version_tuple(text: str | None) -> tuple[int, ...]:
    parts = []
    for p in (text or "").split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def detect(http: httpx.Client, url: str, api: str = "auto", model: str | None = None) -> RemoteCapabilities:
    if api not in APIS:
        raise ValueError(f"api must be one of {APIS}, got {api!r}")
    models = _get_json(http, "/v1/models")
    sgl_info = _get_json(http, "/get_model_info")
    if models is None and sgl_info is None:
        raise RemoteFeatureError(f"no OpenAI-compatible (/v1/models) or SGLang (/get_model_info) API answers at {url}")
    cards = (models or {}).get("data") or []
    card = next((c for c in cards if model is None or c.get("id") == model), None)
    if model is not None and card is None and cards:
        raise ValueError(f"the server at {url} does not serve model {model!r}; it serves "
                         f"{', '.join(c.get('id', '?') for c in cards)}")
    owner = (card or {}).get("owned_by", "")
    info = _get_json(http, "/server_info") if sgl_info is not None else None
    if owner == "nbinfer" or (info or {}).get("server") == "nbinfer":
        server = "nbinfer"
    elif owner == "vllm":
        server = "vllm"
    elif sgl_info is not None or owner == "sglang":
        server = "sglang"
    else:
        server = "openai-compatible"
    if api == "auto":
        api = "sglang" if server == "sglang" else "openai"
    if api == "sglang" and sgl_info is None:
        raise RemoteFeatureError(f"the {server} server at {url} has no SGLang API (/get_model_info)")
    if api == "openai" and models is None:
        raise RemoteFeatureError(f"the {server} server at {url} has no OpenAI-compatible API (/v1/models)")
    name = (card or {}).get("id") or model or (sgl_info or {}).get("model_path") or "default"
    max_len = (card or {}).get("max_model_len") or (info or {}).get("max_model_len") or (info or {}).get("context_length")
    version = (_get_json(http, "/version") or {}).get("version") if server in ("nbinfer", "vllm") else (info or {}).get("version")
    known = server != "openai-compatible"
    field = "guided" if server == "vllm" and _version_tuple(version) < (0, 11) else "structured_outputs"
    return RemoteCapabilities(url=url, server=server, api=api, model=name, max_model_len=max_len, version=version,
                              prompt_logprobs=known, constraints=known, token_ids=known, sampling_extras=known,
                              tokenize=server in ("nbinfer", "vllm"), structured_outputs_field=field)
