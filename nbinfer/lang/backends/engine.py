"""EngineBackend: an SGL backend on an in-process `nbinfer.LLM`, through its public API (submit /
handles / tokenizer / reset_prefix_cache)."""
from __future__ import annotations

import dataclasses
import threading
import weakref

from ...engine.sampling_params import SamplingParams
from ..chat_template import ChatTemplate
from ..constraints import ConstraintFactory
from ..context import ProgramRun
from ..sampling import GenRequest
from .base import register_backend
from .handles import HandleBackend, sampling_params


@register_backend("engine")
class EngineBackend(HandleBackend):
    """An in-process nbinfer.LLM. One per LLM (for_llm) so tokenizer-side caches are shared."""

    serves = "an nbinfer.LLM"

    _by_llm: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
    _by_llm_lock = threading.Lock()

    def __init__(self, llm, owns_llm: bool = False):
        self.llm = llm
        self.owns_llm = owns_llm
        self.tokenizer = llm.tokenizer
        self._tok_lock = threading.Lock()
        self._template: ChatTemplate | None = None
        self._constraints = None
        self._lock = threading.Lock()

    @classmethod
    def for_llm(cls, llm) -> "EngineBackend":
        with cls._by_llm_lock:
            backend = cls._by_llm.get(llm)
            if backend is None:
                backend = cls._by_llm[llm] = cls(llm)
            return backend

    @classmethod
    def wrap(cls, obj) -> "EngineBackend | None":
        if hasattr(obj, "submit") and hasattr(obj, "tokenizer"):     # an nbinfer.LLM
            return cls.for_llm(obj)
        return None

    # -- tokenizer-side ---------------------------------------------------------------------------
    @property
    def chat_template(self) -> ChatTemplate:
        if self._template is None:
            self._template = ChatTemplate(self.tokenizer)
        return self._template

    def encode(self, text: str) -> list[int]:
        """Token ids the engine would use for `text`. A text that already starts with the BOS token
        (a chat template wrote it) gets no second one."""
        bos = getattr(self.tokenizer, "bos_token", None)
        with self._tok_lock:    # HF fast tokenizers are not safe to share across threads
            return self.tokenizer.encode(text, add_special_tokens=not (bos and text.startswith(bos)))

    def _prompt(self, text: str) -> dict:
        return {"prompt": text, "prompt_token_ids": self.encode(text)}

    def constraint(self, req: GenRequest):
        if req.regex is None and req.json_schema is None:
            return None
        with self._lock:
            if self._constraints is None:
                self._constraints = ConstraintFactory(self.tokenizer, self._vocab_size(), self._eos_ids())
        if req.regex is not None:
            return self._constraints.regex(req.regex)
        return self._constraints.json_schema(req.json_schema)

    def _vocab_size(self) -> int:
        # the logits' width (the model's vocab_size, often padded past the tokenizer's)
        engine = getattr(self.llm, "engine", None)
        mc = getattr(engine, "model_config", None)
        return int(getattr(mc, "vocab_size", 0) or len(self.tokenizer))

    def _eos_ids(self) -> tuple[int, ...]:
        ids = set(getattr(getattr(self.llm, "engine", None), "eos_ids", ()) or ())
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return tuple(sorted(ids))

    def decode(self, token_ids: list[int]) -> str:
        with self._tok_lock:
            return self.tokenizer.decode(token_ids)

    # -- requests ---------------------------------------------------------------------------------
    def _params(self, req: GenRequest) -> SamplingParams:
        return dataclasses.replace(sampling_params(req), constraint=self.constraint(req))

    def _send(self, prompt, params, run: ProgramRun, req: GenRequest | None):
        return self.llm.submit(prompt, params, program_id=run.program_id)

    def _constraint_complete(self, req, params, completion) -> bool | None:
        if params.constraint is None:
            return None
        replay = params.constraint.new_state()      # did the output end as a whole match (not cut short)?
        for t in completion.token_ids:
            replay.accept(t)
        return replay.is_complete()

    def _worth_caching(self, prompt) -> bool:
        # the cache holds whole blocks: a shorter prefix would leave nothing to share
        return len(prompt["prompt_token_ids"]) >= self.llm.config.block_size

    def flush_cache(self) -> None:
        self.llm.reset_prefix_cache()

    def server_info(self) -> dict:
        st = self.llm.stats()
        return {"model": st.model, "device": st.device, "dtype": st.dtype, "max_model_len": st.max_model_len,
                "num_running": st.num_running, "num_waiting": st.num_waiting}

    def shutdown(self) -> None:
        if self.owns_llm and self.llm is not None:
            self.llm.shutdown()

    def __repr__(self) -> str:
        return f"EngineBackend({self.llm!r})"

