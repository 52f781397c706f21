"""EngineBackend: an SGL backend on an in-process `nbinfer.LLM`, through its public API (submit /
handles / tokenizer / reset_prefix_cache)."""
from __future__ import annotations

import threading
import weakref

from ...engine.handle import cancel_all
from ...engine.sampling_params import SamplingParams
from ..chat_template import ChatTemplate
from ..constraints import ConstraintFactory
from ..context import ProgramRun
from ..sampling import GenRequest
from .base import Backend, GenResult, TokenLogprob, register_backend


@register_backend("engine")
class EngineBackend(Backend):
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

    # -- requests ---------------------------------------------------------------------------------
    def _params(self, req: GenRequest):
        return SamplingParams(
            max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
            min_p=req.min_p, frequency_penalty=req.frequency_penalty, presence_penalty=req.presence_penalty,
            ignore_eos=req.ignore_eos, stop=list(req.stop) or None, stop_token_ids=list(req.stop_token_ids),
            logprobs=req.top_logprobs_num if req.return_logprob else None, constraint=self.constraint(req))

    def _submit(self, prompt, params, run: ProgramRun):
        run.check()
        handle = self.llm.submit(prompt, params, program_id=run.program_id)
        return handle, run.track(handle)

    def _finish(self, handle, token: int, run: ProgramRun):
        """The handle's output, recorded in the program's stats."""
        try:
            out = handle.result()
        except BaseException:
            handle.cancel()
            raise
        finally:
            run.untrack(token)
        completion = sum(len(c.token_ids) for c in out.outputs)
        run.stats.record(len(out.prompt_token_ids), out.num_cached_tokens, completion)
        run.check()
        return out

    def generate(self, prompt: str, req: GenRequest, run: ProgramRun, on_delta=None) -> GenResult:
        params = self._params(req)
        handle, token = self._submit(self._prompt(prompt), params, run)
        try:
            if on_delta is not None:
                for delta in handle:
                    on_delta(delta)
        except BaseException:
            handle.cancel()
            run.untrack(token)
            raise
        out = self._finish(handle, token, run)
        c = out.outputs[0]
        meta = {"id": out.request_id, "prompt_tokens": len(out.prompt_token_ids),
                "completion_tokens": len(c.token_ids), "cached_tokens": out.num_cached_tokens,
                "finish_reason": {"type": c.finish_reason, "matched": c.stop_reason}}
        if params.constraint is not None:      # did the output end as a whole match (not cut short)?
            replay = params.constraint.new_state()
            for t in c.token_ids:
                replay.accept(t)
            meta["constraint_complete"] = replay.is_complete()
        if c.logprobs is not None:
            meta["output_token_logprobs"] = [
                (lps[t].logprob, t, lps[t].decoded_token) for t, lps in zip(c.token_ids, c.logprobs)]
            if req.top_logprobs_num:
                meta["output_top_logprobs"] = [
                    sorted(((lp.logprob, tid, lp.decoded_token) for tid, lp in lps.items()
                            if lp.rank is not None and lp.rank <= req.top_logprobs_num), reverse=True)
                    for lps in c.logprobs]
        return GenResult(c.text, meta)

    def choice_logprobs(self, prefix: str, choices: list[str], run: ProgramRun) -> list[list[TokenLogprob]]:
        prefix_ids = self.encode(prefix)
        jobs = []
        for choice in choices:
            ids = self.encode(prefix + choice)
            # where the prefix's own tokens end: a choice may merge with the prefix's last token
            # (prefix "a " + choice "b" tokenizes " b"); that merged token then counts as the choice's
            start = _common_prefix_len(prefix_ids, ids)
            start = max(start, 1)               # position 0 has no log-prob
            params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, logprob_start_len=start)
            jobs.append((ids, start, params))
        outs = self._prompt_logprobs([(ids, params) for ids, _, params in jobs], run)
        result = []
        for (ids, start, _), out in zip(jobs, outs):
            lps = out.prompt_logprobs
            result.append([(lps[p][ids[p]].logprob, ids[p], lps[p][ids[p]].decoded_token)
                           for p in range(start, len(ids))])
        return result

    def unconditional_logprobs(self, token_ids: list[list[int]], run: ProgramRun) -> list[list[TokenLogprob]]:
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outs = self._prompt_logprobs([(list(ids), params) for ids in token_ids], run)
        result = []
        for ids, out in zip(token_ids, outs):
            lps = out.prompt_logprobs
            row = [(0.0, ids[0], self.tokenizer.decode([ids[0]]))] if ids else []
            row += [(lps[p][ids[p]].logprob, ids[p], lps[p][ids[p]].decoded_token) for p in range(1, len(ids))]
            result.append(row)
        return result

    def _prompt_logprobs(self, jobs: list, run: ProgramRun) -> list:
        """Submit every (token ids, params) before waiting on any -- one batch for the scheduler --
        and return their outputs; on any error (or Ctrl-C) all of them are aborted."""
        handles = []
        try:
            for ids, params in jobs:
                handles.append(self._submit({"prompt_token_ids": ids}, params, run))
            return [self._finish(h, token, run) for h, token in handles]
        except BaseException:
            cancel_all([h for h, _ in handles])     # one engine step for all of them
            for _, token in handles:
                run.untrack(token)
            raise

    def cache_prefix(self, prefix: str, run: ProgramRun) -> None:
        prompt = self._prompt(prefix)
        if len(prompt["prompt_token_ids"]) < self.llm.config.block_size:
            return          # the cache holds whole blocks: there would be nothing to share
        handle, token = self._submit(prompt, SamplingParams(max_tokens=1, temperature=0.0), run)
        self._finish(handle, token, run)

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


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
