"""SGL backends on a remote server, over nbinfer's RemoteLLM client:

    sgl.set_default_backend(sgl.RuntimeEndpoint("http://127.0.0.1:30000"))    # SGLang's native API
    sgl.set_default_backend(sgl.OpenAI("my-model", base_url="http://127.0.0.1:8000/v1"))   # vLLM, ...

A gen is one streamed request whose prompt is the program's text; a select scores its choices by
the prompt log-probs of token ids from the server's own tokenizer; regex / JSON output needs a
server that enforces it. What a server cannot do is a RemoteFeatureError naming the feature and the
server, raised before the request is sent -- never an output that silently ignores a constraint.
Cancelling a program (Ctrl-C) closes its requests' streams, and the server aborts them.
"""
from __future__ import annotations

import os
import sys
import threading
import weakref

from ..context import ProgramRun
from ..sampling import GenRequest
from .base import register_backend
from .handles import HandleBackend
from .remote_template import remote_chat_template

_NO_BOS = ""


class RemoteBackend(HandleBackend):
    """A program's requests sent to the server behind a RemoteLLM (one backend per client)."""

    api: str = "auto"                 # the API the client must speak for `wrap` to take it

    _by_remote: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
    _by_remote_lock = threading.Lock()

    def __init__(self, remote, chat_template_name: str | None = None, owns_remote: bool = False):
        self.remote = remote
        self.caps = remote.capabilities
        self.owns_remote = owns_remote
        self._template_name = chat_template_name
        self._template = None
        self._bos: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_remote(cls, remote) -> "RemoteBackend":
        """The backend of this kind for a RemoteLLM built elsewhere (one per client; it stays the
        caller's to close). Subclasses' constructors connect to a URL, so this one bypasses them."""
        with cls._by_remote_lock:
            backend = cls._by_remote.get(remote)
            if backend is None:
                backend = object.__new__(cls)
                RemoteBackend.__init__(backend, remote)
                cls._by_remote[remote] = backend
            return backend

    @classmethod
    def wrap(cls, obj) -> "RemoteBackend | None":
        client = sys.modules.get("nbinfer.server.client")      # not imported: obj is no RemoteLLM
        if client is not None and isinstance(obj, client.RemoteLLM) and obj.capabilities.api == cls.api:
            return cls.for_remote(obj)
        return None

    # -- the server's tokenizer -------------------------------------------------------------------
    @property
    def chat_template(self):
        with self._lock:
            if self._template is None:
                self._template = remote_chat_template(self.remote, self._template_name)
            return self._template

    def _bos_text(self) -> str:
        """The BOS token's text if the server's tokenizer adds one (found out once)."""
        if self._bos is None:
            bos = _NO_BOS
            if self.caps.tokenize:
                added = self.remote.tokenize("", add_special_tokens=True)
                bos = self.remote.detokenize(added[:1]) if added else _NO_BOS
            self._bos = bos
        return self._bos

    def encode(self, text: str) -> list[int]:
        """The server's ids for `text`; one that already starts with the BOS token (a chat template
        wrote it) gets no second one, as the in-process engine tokenizes it."""
        bos = self._bos_text()
        return self.remote.tokenize(text, add_special_tokens=not (bos and text.startswith(bos)))

    def decode(self, token_ids: list[int]) -> str:
        return self.remote.detokenize(token_ids)

    def _prompt(self, text: str):
        # An OpenAI-style server adds BOS to a text prompt even when the text starts with it (vLLM
        # does): send such a prompt as token ids. SGLang's /generate is given the text, as SGLang's
        # own RuntimeEndpoint gives it.
        if self.caps.api == "openai" and self.caps.token_ids:
            bos = self._bos_text()
            if bos and text.startswith(bos):
                return {"prompt": text, "prompt_token_ids": self.encode(text)}
        return text

    # -- requests ---------------------------------------------------------------------------------
    def _send(self, prompt, params, run: ProgramRun, req: GenRequest | None):
        if req is None:
            return self.remote.submit(prompt, params)
        return self.remote.submit(prompt, params, regex=req.regex, json_schema=req.json_schema)

    def _constraint_complete(self, req, params, completion) -> bool | None:
        if req.regex is None and req.json_schema is None:
            return None
        return completion.finish_reason != "length"    # the server enforced it; only a cut can leave it open

    def choice_logprobs(self, prefix: str, choices: list[str], run: ProgramRun):
        self.caps.require("select (it scores each choice by prompt log-probs of token ids)",
                          self.caps.prompt_logprobs and self.caps.token_ids)
        return super().choice_logprobs(prefix, choices, run)

    def unconditional_logprobs(self, token_ids: list[list[int]], run: ProgramRun):
        self.caps.require("select with unconditional likelihoods (prompt log-probs of token ids)",
                          self.caps.prompt_logprobs and self.caps.token_ids)
        return super().unconditional_logprobs(token_ids, run)

    def cache_prefix(self, prefix: str, run: ProgramRun) -> None:
        if self.caps.server in ("nbinfer", "vllm", "sglang"):    # servers with a prefix cache
            super().cache_prefix(prefix, run)

    def flush_cache(self) -> None:
        self.remote.flush_cache()

    def server_info(self) -> dict:
        caps = self.caps
        return {"backend": type(self).__name__, "server": caps.server, "url": caps.url, "api": caps.api,
                "model": caps.model, "version": caps.version, "max_model_len": caps.max_model_len}

    def get_server_info(self) -> dict:      # SGLang's backends' names
        return self.server_info()

    def get_model_name(self) -> str:
        return self.caps.model

    def shutdown(self) -> None:
        if self.owns_remote:
            self.remote.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.caps.describe()})"


def _client(url: str, api_key: str | None, api: str, model: str | None = None, verify=None):
    import httpx

    from ...server.client import RemoteLLM
    transport = httpx.HTTPTransport(verify=verify) if verify is not None else None
    return RemoteLLM(url, api_key=api_key, api=api, model=model, transport=transport)


@register_backend("sglang")
class RuntimeEndpoint(RemoteBackend):
    """A server speaking SGLang's native API (SGLang, or `nbinfer serve`), with SGLang's signature:
    RuntimeEndpoint(base_url, api_key=None, verify=None, chat_template_name=None)."""

    api = "sglang"
    serves = "a RemoteLLM (nbinfer.server)"     # either API: named once in error messages

    def __init__(self, base_url: str, api_key: str | None = None, verify=None,
                 chat_template_name: str | None = None):
        super().__init__(_client(base_url, api_key, "sglang", verify=verify), chat_template_name, owns_remote=True)



@register_backend("openai")
class OpenAI(RemoteBackend):
    """An OpenAI-compatible server (vLLM, nbinfer serve, ...), named as SGLang names its OpenAI backend:
    OpenAI(model_name=None, base_url=..., api_key=...). The program's text goes to /v1/completions
    (roles rendered by the server's chat template); base_url and api_key default to
    $OPENAI_BASE_URL and $OPENAI_API_KEY as the openai client's do, and a base_url ending in /v1
    is taken as the server's."""

    api = "openai"

    def __init__(self, model_name: str | None = None, base_url: str | None = None, api_key: str | None = None,
                 chat_template_name: str | None = None):
        base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise ValueError("OpenAI(...) needs base_url= (or $OPENAI_BASE_URL): the server to send programs to")
        api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        super().__init__(_client(base_url, api_key, "openai", model=model_name), chat_template_name,
                         owns_remote=True)
