"""The engine: one thread owns the model and the KV pool; everything else talks to it by message.

    submit() (any thread) -> AddRequest -> inbox -> engine thread: schedule -> run -> postprocess -> sinks

submit() validates and tokenizes in the caller's thread, so bad input raises there as a ValueError
and never reaches the engine thread. The engine thread handles each message (messages.py) between
steps; block work belongs to the scheduler and pool, token work to the output processor.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from concurrent.futures import Future

import torch

from ..models.tokenizer import eos_token_ids, load_tokenizer, sampling_defaults
from .block_pool import BlockPool
from .config import EngineConfig
from .forking import Forker
from .handle import RequestHandle
from .mailbox import Mailbox
from .messages import AbortRequests, AddRequest, Call, Message
from .model_runner import ModelRunner
from .output_processor import OutputProcessor
from .resolved import ResolvedConfig
from .sampler import Sampler
from .sampling_params import SamplingParams
from .scheduler import Batch, Scheduler
from .sequence import Request, Sequence
from .sink import tell
from .stats import EngineStats, ThroughputMeter, Totals, snapshot
from .submission import Intake

log = logging.getLogger("nbinfer")


class Engine:
    def __init__(self, cfg: EngineConfig):
        self.cfg = cfg
        rc = ResolvedConfig.resolve(cfg)
        self.model_config, self.device, self.dtype = rc.model, rc.device, rc.dtype
        self.tokenizer = load_tokenizer(cfg.tokenizer or rc.model_path, cfg.trust_remote_code)
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
        self.outputs = OutputProcessor(self.tokenizer, self.eos_ids, self.max_model_len)
        self.forker = Forker(self.scheduler, self.runner.copy_blocks, self._new_seq)
        self.intake = Intake(self.tokenizer, self.max_model_len, self.model_config.vocab_size, cfg.max_num_seqs)

        self.requests: dict[str, Request] = {}
        self._live_ids: set[str] = set()       # submitted and not yet finished (guarded by _state_lock)
        self._ids = itertools.count()
        self._meter = ThroughputMeter()
        self.totals = Totals()
        # Held by the engine thread while it mutates request/pool state (never during the forward
        # pass), so stats() from any thread sees a consistent, current picture at little cost.
        self._state_lock = threading.Lock()
        self._shutdown_lock = threading.Lock()
        self._shut_down = False                # shutdown() ran (under _shutdown_lock)
        self._closed = False                   # weights and KV freed (set under _state_lock)
        self.error: str | None = None          # why the engine thread stopped, if an error stopped it
        self.mailbox = Mailbox({AddRequest: self._on_add, AbortRequests: self._on_abort, Call: self._on_call},
                               self._refuse, self._state_lock)
        self._thread = self.mailbox.reader = threading.Thread(target=self._loop, name="nbinfer-engine", daemon=True)
        self._thread.start()

    # -- caller side (any thread) -----------------------------------------------------------------
    def submit(self, prompt, params: SamplingParams | None = None, request_id: str | None = None,
               program_id: str | None = None, origin: str = "api") -> RequestHandle:
        if self.mailbox.closed_by is not None:
            raise RuntimeError(str(self.mailbox.closed_by))      # shut down, or stopped by an error
        params = params or SamplingParams()
        text, ids, max_tokens = self.intake(prompt, params)
        rid = request_id or f"req-{next(self._ids)}"
        with self._state_lock:
            if rid in self._live_ids:
                raise ValueError(f"request_id {rid!r} is already in use by a running request")
            self._live_ids.add(rid)
        req = Request(rid, text, ids, params, max_tokens, time.monotonic(), program_id=program_id, origin=origin)
        req.sink = handle = RequestHandle(rid, params.n, self._cancel)
        self.mailbox.post(AddRequest(req))
        return handle

    def call(self, fn, timeout: float | None = None):
        """Run fn() on the engine thread between steps and return its result."""
        return self.mailbox.ask(Call(fn, Future()), timeout)

    def _cancel(self, handles: list[RequestHandle]) -> None:
        """Abort these requests in one message; returns once their blocks are free."""
        self.mailbox.ask(AbortRequests(tuple((h.request_id, h) for h in handles), Future()))

    def reset_prefix_cache(self) -> None:
        self.call(self.pool.reset_prefix_cache)

    def stats(self) -> EngineStats:
        prefill, decode = self._meter.rates()
        with self._state_lock:
            if self._closed:
                raise RuntimeError("the engine has been shut down")
            return snapshot(self, prefill, decode)

    def shutdown(self) -> None:
        with self._shutdown_lock:           # two threads shutting down: the second waits, then returns
            if self._shut_down:
                return
            self._shut_down = True
            self.mailbox.close(RuntimeError("the engine was shut down"))   # a dead engine keeps its cause
            self._thread.join(timeout=60)
            if self._thread.is_alive():     # a step still on the device: freeing under it would crash it
                log.warning("the engine thread did not stop within 60 s; weights and KV stay allocated until "
                            "this engine is garbage-collected")
                return
            with self._state_lock:
                self._closed = True
            self.runner.close()
            del self.runner

    # -- engine thread: the loop and the messages ---------------------------------------------------
    def _loop(self) -> None:
        try:
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
        except BaseException as e:       # SystemExit, a device fault...: this thread cannot go on
            log.critical("the engine thread stopped", exc_info=e)
            cause = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            self.error = f"the engine stopped: {cause}; load the model again"
            self.mailbox.close(RuntimeError(self.error))
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
            req.seqs.append(self._new_seq(req, 0, list(req.prompt_token_ids)))
            self.requests[req.request_id] = req
            self.totals.prompt += len(req.prompt_token_ids)
            self.scheduler.add(req.seqs[0])
        except Exception as e:      # this request's fault or not, only it fails
            self._reject(req, e)

    def _on_abort(self, msg: AbortRequests) -> None:
        aborted: list[Request] = []
        for rid, sink in msg.targets:
            req = self.requests.get(rid)
            if req is not None and req.sink is sink:    # else finished, or its id reused by a newer request
                aborted.append(req)
        live = [s for req in aborted for s in req.seqs if not s.finished]
        for seq in live:
            seq.finish_reason = "abort"
        self.scheduler.finish(live)
        self.outputs.stream_all(live, {})     # a sink that fails here still gets its output below
        for req in aborted:
            self._complete(req)
        msg.reply.set_result(None)

    def _on_call(self, msg: Call) -> None:
        try:
            msg.reply.set_result(msg.fn())
        except Exception as e:
            msg.reply.set_exception(e)

    def _new_seq(self, req: Request, index: int, token_ids: list[int]) -> Sequence:
        seq = Sequence(req, index, token_ids)
        seq.detok = self.outputs.detokenizer(req)
        if req.params.seed is not None:
            seq.generator = torch.Generator(device=self.device)
            seq.generator.manual_seed((req.params.seed + index) % 2**64)   # n > 1: seed, seed+1, ...
        return seq

    # -- engine thread: one step ------------------------------------------------------------------
    def _step(self) -> None:
        started = time.monotonic()
        with self._state_lock:
            batch = self.scheduler.schedule()
        if not batch.items:
            return
        out = self.runner.run(batch)
        with self._state_lock:
            self._postprocess(batch, out, started)

    def _postprocess(self, batch: Batch, out, started: float) -> None:
        prefill, decode = batch.token_counts()
        self.scheduler.commit(batch)
        failed: dict[Request, Exception] = {}     # what fails because of one request fails it alone
        if out.prompt_logits is not None:
            self.outputs.collect_prompt_logprobs(out, failed)
        rows, seqs = self.forker.sampling_rows(batch, failed)
        if seqs:
            logits = out.sample_logits if rows == list(range(len(out.sample_logits))) else out.sample_logits[rows]
            ended = self.outputs.append_all(seqs, self.sampler(logits, seqs), failed)
            self.totals.generation += len(seqs)
            self.scheduler.finish(ended)
            self.outputs.stream_all(seqs, failed)
            for req in dict.fromkeys(seq.request for seq in ended):
                if req.finished and req not in failed:
                    self._complete(req)
        for req, error in failed.items():
            self._reject(req, error)
        self.totals.steps += 1
        self.totals.peak_running = max(self.totals.peak_running, len(self.scheduler.running))
        self._meter.record(started, prefill, decode)

    def _complete(self, req: Request) -> None:
        """Hand the final output over (under the state lock, so stats() never shows a finished
        request's blocks as still used once its caller has the result)."""
        self.requests.pop(req.request_id, None)
        self._live_ids.discard(req.request_id)
        req.metrics.finished_time = time.monotonic()
        tell(req.sink.on_finish, self.outputs.output(req))

    def _reject(self, req: Request, error: BaseException) -> None:
        """Fail one request: its unfinished sequences leave the scheduler, their blocks go back."""
        try:
            self.scheduler.finish(req.seqs)
        finally:                                # its caller learns of it whatever else went wrong
            self.requests.pop(req.request_id, None)
            self._live_ids.discard(req.request_id)
            tell(req.sink.on_error, error)

    def _fail_all(self, error: BaseException) -> None:
        for req in list(self.requests.values()):
            try:
                self._reject(req, error)
            except Exception:
                log.exception("could not free request %s's blocks", req.request_id)

