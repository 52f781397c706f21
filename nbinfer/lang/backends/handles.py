"""HandleBackend: what the in-process engine and a remote server have in common as SGL backends.
Both take `submit(prompt, SamplingParams)` and give a RequestHandle (stream, result, cancel), so a
gen, a select and the prefix a fork shares are the same requests on either; a subclass says how to
tokenize, how to send one request and what a constraint looks like there."""
from __future__ import annotations

from abc import abstractmethod

from ...engine.handle import cancel_all
from ...engine.sampling_params import SamplingParams
from ..context import ProgramRun
from ..sampling import GenRequest
from .base import Backend, GenResult, TokenLogprob


def sampling_params(req: GenRequest) -> SamplingParams:
    """A gen's sampling values as SamplingParams (constraints are the backend's to add)."""
    return SamplingParams(
        max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p, top_k=req.top_k,
        min_p=req.min_p, frequency_penalty=req.frequency_penalty, presence_penalty=req.presence_penalty,
        ignore_eos=req.ignore_eos, stop=list(req.stop) or None, stop_token_ids=list(req.stop_token_ids),
        logprobs=req.top_logprobs_num if req.return_logprob else None)


class HandleBackend(Backend):
    """Must: `encode`, `decode`, `_send`, `chat_template`. May: `_prompt`, `_params`,
    `_constraint_complete`, `cache_prefix`'s `_worth_caching`."""

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The token ids the model sees for `text` (as its prompt)."""

    @abstractmethod
    def decode(self, token_ids: list[int]) -> str: ...

    @abstractmethod
    def _send(self, prompt, params: SamplingParams, run: ProgramRun, req: GenRequest | None):
        """Submit one request and return its RequestHandle; `req` is the gen it runs (its
        constraints), None for a scoring request."""

    def _prompt(self, text: str):
        """What `_send` gets for a prompt text."""
        return text

    def _params(self, req: GenRequest) -> SamplingParams:
        return sampling_params(req)

    def _constraint_complete(self, req: GenRequest, params: SamplingParams, completion) -> bool | None:
        """Whether a constrained output ended as a whole match (None: not constrained)."""
        return None

    def _worth_caching(self, prompt) -> bool:
        return True

    # -- requests ---------------------------------------------------------------------------------
    def _submit(self, prompt, params, run: ProgramRun, req: GenRequest | None = None):
        run.check()
        handle = self._send(prompt, params, run, req)
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
        handle, token = self._submit(self._prompt(prompt), params, run, req)
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
        complete = self._constraint_complete(req, params, c)
        if complete is not None:
            meta["constraint_complete"] = complete
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
            row = [(0.0, ids[0], self.decode([ids[0]]))] if ids else []
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
        if not self._worth_caching(prompt):
            return
        handle, token = self._submit(prompt, SamplingParams(max_tokens=1, temperature=0.0), run)
        self._finish(handle, token, run)


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
