"""Output processing: what the engine thread does with each sampled token, and how text leaves.

A token is appended, its logprob entry built, the constraint advanced; then it may end the sequence
(a stop token, EOS, a stop string in the detokenized text, max_tokens, max_model_len, a finished
constraint). Text reaches the request's sink as deltas, holding back what could still become a
stop string; the final RequestOutput is built here too.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..models.tokenizer import IncrementalDetokenizer
from .outputs import CompletionOutput, Logprob, RequestOutput
from .sampler import SampleResult, prompt_logprobs
from .sequence import Request, Sequence

if TYPE_CHECKING:
    from .model_runner import StepOutput


class OutputProcessor:
    def __init__(self, tokenizer, eos_ids: set[int], max_model_len: int):
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.max_model_len = max_model_len

    def detokenizer(self, req: Request) -> IncrementalDetokenizer:
        return IncrementalDetokenizer(self.tokenizer, req.prompt_token_ids, req.params.skip_special_tokens)

    # -- tokens in --------------------------------------------------------------------------------
    def append_all(self, seqs: list[Sequence], result: SampleResult, failed: dict[Request, Exception]) -> list[Sequence]:
        """Row i of the sampler's result is seqs[i]'s next token; returns the sequences it ended. What
        raises for one row (its constraint, its detokenizer) fails that request alone: into failed."""
        ended = []
        for i, seq in enumerate(seqs):
            try:
                if i in result.errors:
                    raise result.errors[i]
                if seq.request not in failed and self.append(seq, i, result):
                    ended.append(seq)
            except Exception as e:
                failed.setdefault(seq.request, e)
        return ended

    def append(self, seq: Sequence, i: int, result: SampleResult) -> bool:
        """Row i of the sampler's result is seq's next token; True if it ends the sequence (its
        finish_reason and stop_reason are set; the caller takes it out of the scheduler)."""
        req, p = seq.request, seq.request.params
        tok = result.tokens[i]
        seq.token_ids.append(tok)
        if req.metrics.first_token_time is None:
            req.metrics.first_token_time = time.monotonic()
        if seq.logprobs is not None:
            top = (result.top_ids[i], result.top_logprobs[i]) if result.top_ids is not None else ((), ())
            seq.logprobs.append(self._logprob_entry(tok, result.logprobs[i], result.ranks[i], *top))
            seq.cumulative_logprob += result.logprobs[i]
        if seq.constraint is not None:
            seq.constraint.accept(tok)

        if tok in p.stop_token_ids:
            return self._finish(seq, "stop", tok)
        if tok in self.eos_ids and not p.ignore_eos:
            return self._finish(seq, "stop", None)
        before = len(seq.text)
        seq.text += seq.detok.push(tok)
        if p.stop and len(seq.text) > before:
            for stop in p.stop:
                at = seq.text.find(stop, max(0, before - len(stop) + 1))
                if at >= 0:
                    seq.text = seq.text[:at + len(stop) if p.include_stop_str_in_output else at]
                    return self._finish(seq, "stop", stop, flush=False)
        if seq.num_output >= req.max_tokens or seq.num_tokens >= self.max_model_len:
            return self._finish(seq, "length", None)
        if seq.constraint is not None and seq.constraint.is_finished():
            return self._finish(seq, "stop", None)
        return False

    @staticmethod
    def _finish(seq: Sequence, reason: str, stop_reason, flush: bool = True) -> bool:
        if flush:
            seq.text += seq.detok.flush()
        seq.finish_reason, seq.stop_reason = reason, stop_reason
        return True

    def collect_prompt_logprobs(self, out: "StepOutput", failed: dict[Request, Exception]) -> None:
        """The step's prompt logprobs into their requests; a request whose entries fail goes to failed."""
        for span in out.prompt_spans:
            req = span.request
            k = req.params.prompt_logprobs or 0
            rows = out.prompt_logits[span.rows]
            n = rows.shape[0]
            targets = req.prompt_token_ids[span.first_pos + 1:span.first_pos + 1 + n]
            try:
                chosen, ranks, top_ids, top_lps = prompt_logprobs(rows, targets, k)
                for j in range(n):
                    req.prompt_logprobs[span.first_pos + 1 + j] = self._logprob_entry(
                        targets[j], chosen[j], ranks[j], top_ids[j], top_lps[j])
            except Exception as e:
                failed.setdefault(req, e)
            req.prompt_logprobs_done = span.first_pos + 1 + n

    def _logprob_entry(self, token: int, logprob: float, rank: int, top_ids, top_logprobs) -> dict:
        """vLLM's {token_id: Logprob}: the chosen token, then the top-k (rank 1 = most likely)."""
        entry = {token: Logprob(logprob, rank, self._token_text(token))}
        for r, (tid, lp) in enumerate(zip(top_ids, top_logprobs)):
            entry.setdefault(tid, Logprob(lp, r + 1, self._token_text(tid)))
        return entry

    def _token_text(self, tid: int) -> str:
        return self.tokenizer.decode([tid])

    # -- text out ---------------------------------------------------------------------------------
    def stream_all(self, seqs: list[Sequence], failed: dict[Request, Exception]) -> None:
        for seq in seqs:
            try:
                self.stream(seq)
            except Exception as e:          # a sink that raises fails its own request
                failed.setdefault(seq.request, e)

    @staticmethod
    def stream(seq: Sequence) -> None:
        """Send seq's new text to its request's sink, holding back a stop string that may be forming."""
        hold = 0
        if not seq.finished and seq.request.params.stop:
            hold = max(len(s) for s in seq.request.params.stop) - 1
        end = max(seq.sent, len(seq.text) - hold)
        if end > seq.sent:
            seq.request.sink.on_delta(seq.index, seq.text[seq.sent:end])
            seq.sent = end

    @staticmethod
    def output(req: Request) -> RequestOutput:
        outs = [CompletionOutput(s.index, s.text, s.output_ids, s.cumulative_logprob if s.logprobs is not None
                                 else None, s.logprobs, s.finish_reason, s.stop_reason) for s in req.seqs]
        for index in range(len(outs), req.params.n):     # aborted before the fork
            outs.append(CompletionOutput(index, "", [], None, [] if req.params.logprobs is not None else None,
                                         "abort"))
        return RequestOutput(req.request_id, req.prompt, req.prompt_token_ids, req.prompt_logprobs, outs,
                             finished=True, metrics=req.metrics)
