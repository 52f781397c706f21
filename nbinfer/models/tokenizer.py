"""Tokenizer loading (transformers), stop-token discovery, and incremental detokenization."""
from __future__ import annotations

import json
from pathlib import Path

_REPLACEMENT = "\ufffd"


def load_tokenizer(source: Path | str, trust_remote_code: bool = False):
    """The tokenizer of a resolved model folder (a Path), or of any model reference or tokenizer hub id
    given as a string (the `tokenizer=` option: the tokenizer may come from elsewhere, as in vLLM)."""
    from transformers import AutoTokenizer
    path = source if isinstance(source, Path) else _tokenizer_location(source)
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ValueError(f"cannot load a tokenizer from {path}: {e}") from None


def _tokenizer_location(ref: str) -> Path | str:
    from . import gguf_file
    from .loader import resolve_model_path
    from .named import BUNDLED, NAMED_MODELS
    path = Path(ref).expanduser()
    if path.is_dir() and gguf_file.find_gguf(path) is None:
        return path                          # a folder of tokenizer files needs no config.json
    if path.exists() or ref in NAMED_MODELS or ref == BUNDLED:
        return resolve_model_path(ref)       # a .gguf file, a named or the bundled model
    return ref                               # a hub id: transformers fetches just the tokenizer files


def eos_token_ids(tokenizer, path: Path) -> set[int]:
    """EOS ids from the tokenizer and generation_config.json (Llama 3 lists several there)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    gen = path / "generation_config.json"
    if gen.exists():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, list):
            ids.update(e for e in eos if isinstance(e, int))
    return ids


_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def sampling_defaults(path: Path) -> dict:
    """The sampling settings the model's authors recommend (generation_config.json), as vLLM reads
    them: temperature, top_p, top_k, min_p, repetition_penalty where present."""
    gen = path / "generation_config.json"
    try:
        cfg = json.loads(gen.read_text()) if gen.exists() else {}
    except ValueError:
        return {}
    out = {k: cfg[k] for k in _SAMPLING_KEYS
           if isinstance(cfg.get(k), (int, float)) and not isinstance(cfg.get(k), bool)}
    if out.get("top_k", 1) <= 0:       # HF spells "off" as 0, vLLM as -1
        out["top_k"] = -1
    return out


class IncrementalDetokenizer:
    """Turns a token stream into text deltas without ever emitting half a UTF-8 character.

    Decodes a short window of trailing tokens twice (with and without the newest ones); the text the
    new tokens add is released once it no longer ends in U+FFFD, i.e. once its bytes are complete.
    The window starts with the prompt's last tokens so a leading space decodes as it would in context.
    """

    _CONTEXT = 5

    def __init__(self, tokenizer, prompt_ids: list[int], skip_special_tokens: bool = True):
        self.tok = tokenizer
        self.skip = skip_special_tokens
        self.ids = list(prompt_ids[-self._CONTEXT:])
        self.prefix = 0                     # window start
        self.read = len(self.ids)           # tokens before this are already in the text

    def _decode(self, ids) -> str:
        return self.tok.decode(ids, skip_special_tokens=self.skip)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if len(after) > len(before) and not after.endswith(_REPLACEMENT):
            delta = after[len(before):]
            self._advance()
            return delta
        return ""

    def flush(self) -> str:
        """At the end of a stream: whatever the pending tokens decode to, complete or not."""
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        self._advance()
        return after[len(before):] if len(after) > len(before) else ""

    def _advance(self) -> None:
        self.prefix, self.read = self.read, len(self.ids)
        if self.prefix > 256:               # keep the window list short
            del self.ids[:self.prefix]
            self.read -= self.prefix
            self.prefix = 0
