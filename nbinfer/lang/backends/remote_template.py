"""Role edges (system / user / assistant) for a model behind a remote server.

Where the server renders chat messages (vLLM's and nbinfer's /tokenize with `messages`, then
/detokenize), the edges come from the model's own template exactly as for a local model
(chat_template.ChatTemplate, here over the server instead of a tokenizer). SGLang's server renders
nothing, so there -- or when `chat_template_name=` is given -- the edges come from SGLang's own table
of templates, as SGLang's RuntimeEndpoint takes them (that needs SGLang's frontend package). Any other
server that renders nothing (a plain OpenAI-compatible one) has no roles unless a template is named.
"""
from __future__ import annotations

import threading

from ..chat_template import ChatTemplate
from ..errors import SglError


class _ServerTokenizer:
    """What ChatTemplate reads from a tokenizer, answered by the server."""

    def __init__(self, remote):
        self.remote = remote
        self._renders: dict[tuple, str] = {}
        self._lock = threading.Lock()
        self.chat_template = self._has_template()

    def _has_template(self) -> bool:
        from ...server.remote_handle import RemoteRequestError
        try:
            self.remote.tokenize(messages=[{"role": "user", "content": "x"}])
        except RemoteRequestError:          # the server answered: this model has no template (a 400)
            return False
        return True

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        key = (tuple((m["role"], m["content"]) for m in messages), add_generation_prompt)
        with self._lock:
            hit = self._renders.get(key)
        if hit is None:
            ids = self.remote.tokenize(messages=messages, add_generation_prompt=add_generation_prompt)
            hit = self.remote.detokenize(ids)
            with self._lock:
                self._renders[key] = hit
        return hit

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return self.remote.tokenize(text, add_special_tokens=add_special_tokens)


class ServerChatTemplate(ChatTemplate):
    """The model's template, rendered by the server."""

    def __init__(self, remote):
        super().__init__(_ServerTokenizer(remote))

    def stop_token_ids(self, role: str) -> tuple[int, ...]:
        """The token that ends a `role` message: the server does not say which tokens are special,
        so an end-of-message mark that is one token on its own (<|im_end|>, <|eot_id|>, </s>) is it."""
        with self._lock:
            if role in self._stops:
                return self._stops[role]
        suffix = self.role_suffix(role, []).strip()
        ids = self.tokenizer.encode(suffix) if suffix else []
        stops = tuple(ids) if len(ids) == 1 else ()
        with self._lock:
            self._stops[role] = stops
        return stops


class SglangNamedTemplate:
    """A template from SGLang's table (sglang.lang.chat_template), by name or by the model's path."""

    def __init__(self, name: str | None, model_path: str | None, where: str):
        try:
            from sglang.lang.chat_template import get_chat_template, get_chat_template_by_model_path
        except ImportError:
            raise SglError(f"roles need a chat template from SGLang's table for {where}, and SGLang's "
                           "frontend is not installed (pip install sglang)") from None
        try:
            self.template = get_chat_template(name) if name else get_chat_template_by_model_path(model_path or "")
        except KeyError:
            raise SglError(f"chat_template_name={name!r} is not one of SGLang's chat templates") from None

    def role_prefix(self, role: str, history: list[dict]) -> str:
        return self.template.get_prefix_and_suffix(role, history)[0]

    def role_suffix(self, role: str, history: list[dict]) -> str:
        return self.template.get_prefix_and_suffix(role, history)[1]

    def stop_token_ids(self, role: str) -> tuple[int, ...]:
        return ()           # SGLang's template names stop strings, not ids; the message end is the model's EOS


def remote_chat_template(remote, name: str | None = None):
    """The role edges for `remote` (a RemoteLLM): SGLang's template `name` if given; else the model's
    own template rendered by the server; else, on an SGLang server, SGLang's template for the model's
    path (what SGLang's RuntimeEndpoint uses). Any other server: an error, not a guessed template."""
    caps = remote.capabilities
    where = f"the {caps.server} server at {caps.url}"
    if name is not None:
        return SglangNamedTemplate(name, None, where)
    if caps.tokenize:
        return ServerChatTemplate(remote)
    if caps.server == "sglang":
        return SglangNamedTemplate(None, caps.model, where)
    raise SglError(f"roles need the model's chat template, and {where} cannot render it (no /tokenize); "
                   "name one of SGLang's templates with chat_template_name=... (needs SGLang's frontend)")
