"""Role begin / end strings for system / user / assistant, taken from the tokenizer's chat template.

SGLang keeps a table of role prefixes and suffixes per model family; we derive them from the model's
own Jinja template instead, so any model that ships one works. A message is rendered with a marker
as its content, after the conversation so far (with placeholder contents: the strings between
messages do not depend on what the messages say), and split at the marker. So the text a program
builds with roles is what `tokenizer.apply_chat_template` renders for the same messages.
"""
from __future__ import annotations

import threading

_MARK = "@@sgl-content@@"
_PLACEHOLDER = "@@sgl-earlier@@"
# Without a chat template: SGLang's "default" template.
_PLAIN = {"system": ("SYSTEM:", "\n"), "user": ("USER:", "\n"), "assistant": ("ASSISTANT:", "\n")}


class ChatTemplate:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.has_template = bool(getattr(tokenizer, "chat_template", None))
        self._edges: dict[tuple, tuple[str, str]] = {}
        self._stops: dict[str, tuple[int, ...]] = {}
        self._lock = threading.Lock()

    def role_prefix(self, role: str, history: list[dict]) -> str:
        return self._edges_for(role, tuple(m["role"] for m in history))[0]

    def role_suffix(self, role: str, history: list[dict]) -> str:
        return self._edges_for(role, tuple(m["role"] for m in history))[1]

    def stop_token_ids(self, role: str) -> tuple[int, ...]:
        """The special token that ends a `role` message (e.g. <|im_end|>), so a gen inside the role
        stops where the message would end even when that token is not the model's EOS."""
        with self._lock:
            if role in self._stops:
                return self._stops[role]
        suffix = self._edges_for(role, ())[1].strip()
        ids: tuple[int, ...] = ()
        if suffix:
            first = self.tokenizer.encode(suffix, add_special_tokens=False)[:1]
            if first and first[0] in set(self.tokenizer.all_special_ids):
                ids = (first[0],)
        with self._lock:
            self._stops[role] = ids
        return ids

    def _edges_for(self, role: str, history: tuple[str, ...]) -> tuple[str, str]:
        key = (role, history)
        with self._lock:
            hit = self._edges.get(key)
        if hit is not None:
            return hit
        edges = self._derive(role, history)
        with self._lock:
            if len(self._edges) > 4096:
                self._edges.clear()
            self._edges[key] = edges
        return edges

    def _derive(self, role: str, history: tuple[str, ...]) -> tuple[str, str]:
        if not self.has_template:
            return _PLAIN.get(role, (f"{role.upper()}:", "\n"))
        earlier = [{"role": r, "content": _PLACEHOLDER} for r in history]
        try:
            before = self._render(earlier) if earlier else ""
            full = self._render(earlier + [{"role": role, "content": _MARK}])
            if full.startswith(before) and _MARK in full[len(before):]:
                prefix, suffix = full[len(before):].split(_MARK, 1)
                return prefix, suffix
        except Exception:   # templates that insist on an order of roles: try the message alone
            pass
        try:
            prefix, suffix = self._render([{"role": role, "content": _MARK}]).split(_MARK, 1)
            return prefix, suffix
        except Exception:
            return _PLAIN.get(role, (f"{role.upper()}:", "\n"))

    def _render(self, messages: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
