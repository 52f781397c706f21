"""The engine: one thread owns the model and the KV pool; everything else talks to it by message.

    submit() (any thread) -> inbox -> engine thread: schedule -> run -> postprocess -> handles

submit() validates and tokenizes in the caller's thread, so bad input raises there as a ValueError
and never reaches the engine thread.
"""
from __future__ import annotations

import gc
import itertools
import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout     # the builtin one from Python 3.11

import torch

from ..models.tokenizer import IncrementalDetokenizer, eos_token_ids, load_tokenizer, sampling_defaults
from .block_pool import BlockPool
from .config import EngineConfig
from .handle import _POLL_S, RequestHandle
from .mailbox import Mailbox
from .messages import AbortRequests, AddRequest, Call, Message
from .model_runner import ModelRunner
from .outputs import CompletionOutput, Logprob, RequestOutput
from .resolved import ResolvedConfig
from .sampler import Sampler, prompt_logprobs
from .sampling_params import SamplingParams
from .scheduler import Batch, Scheduler
from .sequence import Request, Sequence, SeqState
from .stats import EngineStats, RequestStats, ThroughputMeter

log = logging.getLogger("nbinfer")


class Engine:
    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        rc = ResolvedConfig.resolve(cfg)
        self.model_config, self.device, self.dtype = rc.model, rc.device, rc.dtype
        self.tokenizer = load_tokenizer(rc.model_path, cfg.trust_remote_code)
        self.eos_ids = eos_token_ids(self.tokenizer, rc.model_path)
        self.generation_defaults = sampling_defaults(rc.model_path)
        self.runner = ModelRunner(rc)
        try:
            self.rc = rc.fit_pool(self.runner.num_blocks)
        except ValueError:
            self.runner.close()
            raise
        self.max_model_len = self.rc.max_model_len
        # the host backends read a sequence's KV as views of contiguous runs: place blocks for that
        self.pool = BlockPool(self.runner.num_blocks, cfg.block_size, cfg.enable_prefix_caching,
                              contiguous=self.runner.backend.wants_contiguous_blocks)
        self.scheduler = Scheduler(cfg, self.pool, self.rc.max_num_batched_tokens)
        self.sampler = Sampler(cfg.seed, self.device)

        self.requests: dict[str, Request] = {}
        self._live_ids: set[str] = set()       # submitted and not yet finished (guarded by _state_lock)
        self._ids = itertools.count()
        self._meter = ThroughputMeter()
        self._totals = dict(prompt=0, generation=0, steps=0, peak_running=0)
        # Held by the engine thread while it mutates request/pool state (never during the forward
        # pass), so stats() from any thread sees a consistent, current picture at little cost.
        self._state_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        self._closed = False                   # weights and KV freed (set under _state_lock)
        self.mailbox = Mailbox({AddRequest: self._on_add, AbortRequests: self._on_abort, Call: self._on_call},
                               self._refuse, self._state_lock)
        self._thread = self.mailbox.reader = threading.Thread(target=self._loop, name="nbinfer-engine", daemon=True)
        self._thread.start()

    # =============================================================================================
    # caller side (any thread)
    # =============================================================================================
    def submit(self, prompt, params: SamplingParams | None = None, request_id: str | None = None,
               program_id: str | None = None) -> RequestHandle:
        if self.mailbox.closed_by is not None:
            raise RuntimeError("the engine has been shut down")
        params = params or SamplingParams()
        if not isinstance(params, SamplingParams):
            raise TypeError(f"sampling params must be a SamplingParams, got {type(params).__name__}")
        text, ids = self._tokenize(prompt)
        if not ids:
            raise ValueError("prompt is empty: it must have at least one token")
        if len(ids) >= self.max_model_len:
            raise ValueError(f"prompt has {len(ids)} tokens; the limit is max_model_len - 1 = "
                             f"{self.max_model_len - 1}")
        vocab = self.model_config.vocab_size
        if any((not isinstance(t, int)) or t < 0 or t >= vocab for t in ids):
            raise ValueError(f"prompt_token_ids must be integers in [0, {vocab})")
        bad_stop = [t for t in params.stop_token_ids if t >= vocab]
        if bad_stop:
            raise ValueError(f"SamplingParams.stop_token_ids has ids outside the vocabulary: {bad_stop}")
        for name in ("logprobs", "prompt_logprobs"):
            if (getattr(params, name) or 0) > vocab:
                raise ValueError(f"SamplingParams.{name}={getattr(params, name)} exceeds the vocabulary size {vocab}")
        room = self.max_model_len - len(ids)
        max_tokens = room if params.max_tokens is None else min(params.max_tokens, room)
        rid = request_id or f"req-{next(self._ids)}"
        with self._state_lock:
            if rid in self._live_ids:
                raise ValueError(f"request_id {rid!r} is already in use by a running request")
            self._live_ids.add(rid)
        req = Request(rid, text, ids, params, max_tokens, time.monotonic(), program_id=program_id)
        req.sink = handle = RequestHandle(rid, params.n, self._cancel)
        self.mailbox.post(AddRequest(req))
        return handle

    def _tokenize(self, prompt) -> tuple[str | None, list[int]]:
        if isinstance(prompt, str):
            return prompt, self.tokenizer.encode(prompt)
        if isinstance(prompt, dict):
            if "prompt_token_ids" in prompt:
                ids = prompt["prompt_token_ids"]
                if not isinstance(ids, (list, tuple)):
                    raise ValueError("prompt_token_ids must be a list of integers")
                return prompt.get("prompt"), list(ids)
            if "prompt" in prompt and isinstance(prompt["prompt"], str):
                return prompt["prompt"], self.tokenizer.encode(prompt["prompt"])
            raise ValueError("a dict prompt needs 'prompt' (str) or 'prompt_token_ids' (list of int)")
        raise ValueError(f"prompt must be a str or a dict with 'prompt_token_ids', got {type(prompt).__name__}")

    def call(self, fn, timeout: float | None = None):
        """Run fn() on the engine thread between steps and return its result."""
        future: Future = Future()
        self.mailbox.post(Call(fn, future))
        try:
            return future.result(timeout)
        except FutureTimeout:
            if future.done():
                raise                           # fn itself raised a TimeoutError
            raise TimeoutError("the engine thread did not answer") from None

    def _cancel(self, handles: list[RequestHandle]) -> None:
        """Abort these requests in one message; waits until their blocks are free."""
        done: Future = Future()
        self.mailbox.post(AbortRequests(tuple((h.request_id, h) for h in handles), done))
        while threading.current_thread() is not self._thread and self._thread.is_alive():
            try:
                return done.result(_POLL_S)     # short waits: Ctrl-C lands between them
            except FutureTimeout:
                pass

    def stats(self) -> EngineStats:
        prefill, decode = self._meter.rates()
        with self._state_lock:
            if self._closed:
                raise RuntimeError("the engine has been shut down")
            return self._snapshot(prefill, decode)

    def shutdown(self) -> None:
        with self._shutdown_lock:           # two threads shutting down: the second waits, then returns
            if self.mailbox.closed_by is not None:
                return
            self.mailbox.close(RuntimeError("the engine was shut down"))
            self._thread.join(timeout=60)
            if self._thread.is_alive():     # a step still on the device: freeing under it would crash it
                log.warning("the engine thread did not stop within 60 s; weights and KV stay allocated until "
                            "this engine is garbage-collected")
                return
            with self._state_lock:
                self._closed = True
            self.runner.close()
            del self.runner
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # =============================================================================================
    # engine thread
    # =============================================================================================
    def _loop(self) -> None:
        while True:
            try:
                if not self.mailbox.handle(block=not self.scheduler.has_work()):
                    break
                if self.scheduler.has_work():
                    self._step()
            except Exception as e:   # a bug or a device error: fail what is in flight, keep serving
                log.exception("engine step failed")
                with self._state_lock:
                    self._fail_all(e)
        with self._state_lock:
            self._fail_all(self.mailbox.closed_by)
        self.mailbox.leave()

    def _refuse(self, msg: Message, error: BaseException) -> None:
        if isinstance(msg, AddRequest):
            with self._state_lock:
                self._live_ids.discard(msg.request.request_id)
        msg.refuse(error)

    def _on_add(self, msg: AddRequest) -> None:
        req = msg.request
        try:
            self._add(req)
        except Exception as e:      # this request's fault or not, only it fails
            self._reject(req, e)

    def _on_abort(self, msg: AbortRequests) -> None:
        for rid, sink in msg.targets:
            self._abort(rid, sink)
        msg.done.set_result(None)

    def _on_call(self, msg: Call) -> None:
        try:
            msg.result.set_result(msg.fn())
        except Exception as e:
            msg.result.set_exception(e)

    def _reject(self, req: Request, error: BaseException) -> None:
        """Fail one request: its unfinished sequences leave the scheduler, their blocks go back."""
        for seq in req.seqs:
            if not seq.finished:
                self.scheduler.remove(seq)
        self.requests.pop(req.request_id, None)
        self._live_ids.discard(req.request_id)
        req.sink.on_error(error)

    def _add(self, req: Request) -> None:
        seq = self._new_seq(req, 0, list(req.prompt_token_ids))
        req.seqs.append(seq)
        self.requests[req.request_id] = req
        self._totals["prompt"] += len(req.prompt_token_ids)
        self.scheduler.add(seq)

    def _new_seq(self, req: Request, index: int, token_ids: list[int]) -> Sequence:
        seq = Sequence(req, index, token_ids)
        seq.detok = IncrementalDetokenizer(self.tokenizer, req.prompt_token_ids, req.params.skip_special_tokens)
        if req.params.seed is not None:
            seq.generator = torch.Generator(device=self.device)
            seq.generator.manual_seed((req.params.seed + index) % 2**64)   # n > 1: seed, seed+1, ...
        return seq

    # -- one step ---------------------------------------------------------------------------------
    def _step(self) -> None:
        started = time.monotonic()
        with self._state_lock:
            batch = self.scheduler.schedule()
        if not batch.items:
            return
        out = self.runner.run(batch)
        with self._state_lock:
            for req in self._postprocess(batch, out, started):
                self._complete(req)

    def _postprocess(self, batch: Batch, out, started: float) -> list[Request]:
        prefill = decode = 0
        for it in batch.items:
            seq = it.seq
            if it.num_new == 1 and seq.num_output > 0 and seq.num_computed == seq.num_tokens - 1:
                decode += 1
            else:
                prefill += it.num_new
            seq.num_computed += it.num_new
            self._publish_blocks(seq)
        if out.prompt_logits is not None:
            self._collect_prompt_logprobs(out)

        finished: list[Request] = []
        sampled = [it.seq for it in batch.items if it.sample]
        if sampled:
            rows, seqs = [], []
            for row, seq in enumerate(sampled):
                req = seq.request
                family = self._fork(seq) if req.params.n > 1 and not req.forked else [seq]
                rows += [row] * len(family)
                seqs += family
            logits = out.sample_logits if len(rows) == len(sampled) else out.sample_logits[rows]
            result = self.sampler(logits, seqs)
            for i, seq in enumerate(seqs):
                self._append_token(seq, i, result)
                if seq.finished and seq.request.finished:
                    finished.append(seq.request)
            for seq in seqs:
                self._stream(seq)

        self._totals["steps"] += 1
        self._totals["peak_running"] = max(self._totals["peak_running"], len(self.scheduler.running))
        self._meter.record(started, prefill, decode)
        return finished

    def _publish_blocks(self, seq: Sequence) -> None:
        full = seq.num_computed // self.cfg.block_size
        if full > seq.num_published:
            seq.cache_hint = self.pool.insert_full_blocks(seq.token_ids, seq.blocks, full,
                                                          seq.num_published, seq.cache_hint)
            seq.num_published = full

    def _fork(self, parent: Sequence) -> list[Sequence]:
        """n > 1: after the prompt's prefill, children share its full blocks and copy the partial one."""
        req = parent.request
        req.forked = True
        bs = self.cfg.block_size
        full = parent.num_computed // bs
        src, dst = [], []
        for index in range(1, req.params.n):
            child = self._new_seq(req, index, list(parent.token_ids))
            req.seqs.append(child)
            if len(self.scheduler.running) >= self.cfg.max_num_seqs:
                self.scheduler.add(child)        # no room to run now: recompute later from the cache
                continue
            fresh = self.pool.allocate(1, after=parent.blocks[-1]) if parent.num_computed % bs else []
            if fresh is None:
                self.scheduler.add(child)
                continue
            shared = parent.blocks[:full]
            self.pool.incref(shared)
            child.blocks = shared + fresh
            if fresh:
                src.append(parent.blocks[full])
                dst.append(fresh[0])
            child.num_computed = parent.num_computed
            child.num_published, child.cache_hint = parent.num_published, parent.cache_hint
            self.scheduler.add_running(child)
        if src:
            self.runner.copy_blocks(src, dst)
        return req.seqs

    def _collect_prompt_logprobs(self, out) -> None:
        for span in out.prompt_spans:
            req = span.request
            k = req.params.prompt_logprobs or 0
            rows = out.prompt_logits[span.rows]
            n = rows.shape[0]
            targets = req.prompt_token_ids[span.first_pos + 1:span.first_pos + 1 + n]
            chosen, ranks, top_ids, top_lps = prompt_logprobs(rows, targets, k)
            for j in range(n):
                req.prompt_logprobs[span.first_pos + 1 + j] = self._logprob_entry(
                    targets[j], chosen[j], ranks[j], top_ids[j], top_lps[j])
            req.prompt_logprobs_done = span.first_pos + 1 + n

    def _logprob_entry(self, token: int, logprob: float, rank: int, top_ids, top_logprobs) -> dict:
        """vLLM's {token_id: Logprob}: the chosen token, then the top-k (rank 1 = most likely)."""
        entry = {token: Logprob(logprob, rank, self._token_text(token))}
        for r, (tid, lp) in enumerate(zip(top_ids, top_logprobs)):
            entry.setdefault(tid, Logprob(lp, r + 1, self._token_text(tid)))
        return entry

    def _token_text(self, tid: int) -> str:
        return self.tokenizer.decode([tid])

    def _append_token(self, seq: Sequence, i: int, result) -> None:
        req, p = seq.request, seq.request.params
        tok = result.tokens[i]
        seq.token_ids.append(tok)
        self._totals["generation"] += 1
        if req.metrics.first_token_time is None:
            req.metrics.first_token_time = time.monotonic()
        if seq.logprobs is not None:
            top = (result.top_ids[i], result.top_logprobs[i]) if result.top_ids is not None else ((), ())
            seq.logprobs.append(self._logprob_entry(tok, result.logprobs[i], result.ranks[i], *top))
            seq.cumulative_logprob += result.logprobs[i]
        if seq.constraint is not None:
            seq.constraint.accept(tok)

        if tok in p.stop_token_ids:
            return self._finish_seq(seq, "stop", tok)
        if tok in self.eos_ids and not p.ignore_eos:
            return self._finish_seq(seq, "stop", None)
        before = len(seq.text)
        seq.text += seq.detok.push(tok)
        if p.stop and len(seq.text) > before:
            for stop in p.stop:
                at = seq.text.find(stop, max(0, before - len(stop) + 1))
                if at >= 0:
                    seq.text = seq.text[:at + len(stop) if p.include_stop_str_in_output else at]
                    return self._finish_seq(seq, "stop", stop, flush=False)
        if seq.num_output >= req.max_tokens or seq.num_tokens >= self.max_model_len:
            return self._finish_seq(seq, "length", None)
        if seq.constraint is not None and seq.constraint.is_finished():
            return self._finish_seq(seq, "stop", None)

    def _finish_seq(self, seq: Sequence, reason: str, stop_reason, flush: bool = True) -> None:
        if flush:
            seq.text += seq.detok.flush()
        seq.finish_reason, seq.stop_reason = reason, stop_reason
        self.scheduler.remove(seq)

    def _stream(self, seq: Sequence) -> None:
        hold = 0
        if not seq.finished and seq.request.params.stop:
            hold = max(len(s) for s in seq.request.params.stop) - 1   # a stop string may be forming
        end = max(seq.sent, len(seq.text) - hold)
        if end > seq.sent:
            seq.request.sink.on_delta(seq.index, seq.text[seq.sent:end])
            seq.sent = end

    def _complete(self, req: Request) -> None:
        """Hand the final output over (called under the state lock, so stats() never shows a finished
        request's blocks as still used once its caller has the result)."""
        self.requests.pop(req.request_id, None)
        self._live_ids.discard(req.request_id)
        req.metrics.finished_time = time.monotonic()
        req.sink.on_finish(self._output(req))

    def _output(self, req: Request) -> RequestOutput:
        outs = [CompletionOutput(s.index, s.text, s.output_ids, s.cumulative_logprob if s.logprobs is not None
                                 else None, s.logprobs, s.finish_reason, s.stop_reason) for s in req.seqs]
        for index in range(len(outs), req.params.n):     # aborted before the fork
            outs.append(CompletionOutput(index, "", [], None, [] if req.params.logprobs is not None else None,
                                         "abort"))
        return RequestOutput(req.request_id, req.prompt, req.prompt_token_ids, req.prompt_logprobs, outs,
                             finished=True, metrics=req.metrics)

    def _abort(self, request_id: str, sink) -> None:
        req = self.requests.get(request_id)
        if req is None or req.sink is not sink:       # finished, or its id reused by a newer request
            return
        for seq in req.seqs:
            if not seq.finished:
                seq.finish_reason = "abort"
                self.scheduler.remove(seq)
                self._stream(seq)
        self._complete(req)

    def _fail_all(self, error: BaseException) -> None:
        for req in list(self.requests.values()):
            self._reject(req, error)

    # -- stats ------------------------------------------------------------------------------------
    def _snapshot(self, prefill_rate: float, decode_rate: float) -> EngineStats:
        """Build EngineStats; the caller holds _state_lock."""
        reqs = {}
        holders: dict[int, int] = {}
        for rid, req in self.requests.items():
            states = {s.state for s in req.seqs}
            if SeqState.RUNNING in states:
                state = "running"
            else:
                state = "preempted" if any(s.num_output for s in req.seqs) else "waiting"
            for s in req.seqs:
                for b in s.blocks:
                    holders[b] = holders.get(b, 0) + 1
            blocks = tuple(dict.fromkeys(b for s in req.seqs for b in s.blocks))
            reqs[rid] = RequestStats(rid, state, len(req.prompt_token_ids), sum(s.num_output for s in req.seqs),
                                     req.max_tokens, blocks, req.program_id, req.params.n)
        pool, sched, runner = self.pool, self.scheduler, self.runner
        return EngineStats(
            blocks_total=pool.num_blocks, blocks_free=pool.num_free, blocks_used=pool.num_used,
            blocks_cached=pool.num_cached, block_size=pool.block_size,
            num_running=len(sched.running), num_waiting=len(sched.waiting),
            num_preempted_total=sched.num_preempted_total,
            prompt_tokens_total=self._totals["prompt"], generation_tokens_total=self._totals["generation"],
            prefix_hit_tokens=sched.prefix_hit_tokens,
            prefill_tokens_per_s=prefill_rate, decode_tokens_per_s=decode_rate,
            weights_bytes=runner.weights_bytes, kv_cache_bytes=runner.kv_cache_bytes,
            requests=reqs, cached_block_ids=tuple(pool.cached_block_ids()),
            shared_block_ids=tuple(b for b, n in holders.items() if n > 1),
            peak_num_running=self._totals["peak_running"], steps_total=self._totals["steps"],
            model=str(self.cfg.model or "default"), device=str(self.device),
            dtype=str(self.dtype).replace("torch.", ""), max_model_len=self.max_model_len)
