"""Iteration-level scheduler: continuous batching, chunked prefill mixed with decodes, preemption.

Each step hands out a token budget. Running sequences go first (a decode costs one token, an
unfinished prefill continues with a chunk), then waiting ones are admitted, prefix-cache hits first
reused. When a running sequence cannot get a block, the newest running sequence is preempted: its
blocks are freed (full ones stay in the prefix cache) and it is recomputed later.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from .block_pool import BlockPool
from .config import EngineConfig
from .sequence import Sequence, SeqState


LPM_MAX_WAITING = 128      # schedule_policy "auto": above this many waiting, keep FCFS order


@dataclass
class ScheduledSeq:
    seq: Sequence
    num_new: int          # tokens computed this step: token_ids[num_computed:num_computed + num_new]
    sample: bool          # the chunk reaches the end of token_ids: sample the next token


@dataclass
class Batch:
    items: list[ScheduledSeq] = field(default_factory=list)   # single-token items first
    num_tokens: int = 0
    preempted: list[Sequence] = field(default_factory=list)

    def token_counts(self) -> tuple[int, int]:
        """(prefill, decode) tokens of this step, for the throughput meter (before commit())."""
        prefill = decode = 0
        for it in self.items:
            seq = it.seq
            if it.num_new == 1 and seq.num_output > 0 and seq.num_computed == seq.num_tokens - 1:
                decode += 1
            else:
                prefill += it.num_new
        return prefill, decode


class Scheduler:
    def __init__(self, cfg: EngineConfig, pool: BlockPool, max_num_batched_tokens: int):
        self.cfg = cfg
        self.pool = pool
        self.block_size = pool.block_size
        self.token_budget = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preempted_total = 0
        self.prefix_hit_tokens = 0      # tokens served from the prefix cache instead of computed

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def finish(self, seqs: list[Sequence]) -> None:
        """Take sequences out (finished or aborted) and give their blocks back: one pass over each
        queue however many there are (n = 1000 samples finishing together cost O(n), not O(n^2))."""
        seqs = [s for s in seqs if not s.finished]
        if not seqs:
            return
        gone = set(seqs)
        if any(s.state is SeqState.RUNNING for s in seqs):
            self.running = [s for s in self.running if s not in gone]
        if any(s.state is SeqState.WAITING for s in seqs):
            self.waiting = deque(s for s in self.waiting if s not in gone)
        for seq in seqs:
            self._release(seq)
            seq.mark_finished()

    def remove(self, seq: Sequence) -> None:
        self.finish([seq])

    def commit(self, batch: Batch) -> None:
        """The batch has run: its tokens' KV is in the cache, and blocks it filled join the prefix cache."""
        for it in batch.items:
            seq = it.seq
            seq.num_computed += it.num_new
            full = seq.num_computed // self.block_size
            if full > seq.num_published:
                seq.cache_hint = self.pool.insert_full_blocks(seq.token_ids, seq.blocks, full,
                                                              seq.num_published, seq.cache_hint)
                seq.num_published = full

    def fork(self, parent: Sequence, children: list[Sequence]) -> tuple[list[int], list[int]]:
        """n > 1, after the prompt's prefill: each child shares the parent's full blocks, gets a copy of
        its partial last one and runs on from where the parent stopped; a child that finds no room
        (max_num_seqs, or no block) waits, to be recomputed later mostly from the prefix cache.
        Returns the (source, destination) blocks whose KV the runner must copy."""
        src, dst = [], []
        full = parent.num_computed // self.block_size
        for child in children:
            blocks = None
            if len(self.running) < self.cfg.max_num_seqs:
                blocks = self.pool.fork(parent.blocks, parent.num_computed)
            if blocks is None:
                self.waiting.append(child)
                continue
            if len(blocks) > full:
                src.append(parent.blocks[full])
                dst.append(blocks[full])
            child.blocks = blocks
            child.num_computed = parent.num_computed
            child.num_published, child.cache_hint = parent.num_published, parent.cache_hint
            child.state = SeqState.RUNNING
            self.running.append(child)
        return src, dst

    def _release(self, seq: Sequence) -> None:
        self.pool.release(seq.blocks)
        seq.blocks = []
        seq.num_computed = 0
        seq.num_published = 0
        seq.cache_hint = None

    def _blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def _grow(self, seq: Sequence, num_tokens: int) -> bool:
        need = self._blocks_for(num_tokens) - len(seq.blocks)
        if need <= 0:
            return True
        blocks = self.pool.allocate(need, after=seq.blocks[-1] if seq.blocks else None)
        if blocks is None:
            return False
        seq.blocks.extend(blocks)
        return True

    def _preempt(self, seq: Sequence, batch: Batch) -> None:
        self._release(seq)
        seq.state = SeqState.WAITING
        self.waiting.appendleft(seq)
        self.num_preempted_total += 1
        batch.preempted.append(seq)

    def schedule(self) -> Batch:
        batch = Batch()
        budget = self.token_budget

        # 1. running sequences, oldest first; the newest are preempted when blocks run out
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            num_new = min(seq.num_tokens - seq.num_computed, budget)
            while not self._grow(seq, seq.num_computed + num_new):
                victim = self.running.pop()
                self._preempt(victim, batch)
                if victim is seq:
                    break
            else:
                batch.items.append(ScheduledSeq(seq, num_new, seq.num_computed + num_new == seq.num_tokens))
                budget -= num_new
                i += 1

        # 2. waiting sequences, unless this step already had to preempt
        if len(self.waiting) > 1 and not batch.preempted and self._longest_prefix_first():
            self._sort_waiting_by_cached_prefix()
        # A request whose next block is being computed right now by another one (same prefix, not
        # cached yet) waits a step and then hits the cache instead of computing it a second time.
        inflight = self._inflight_blocks() if self.pool.prefix_caching else None
        deferred: list[Sequence] = []
        while self.waiting and budget > 0 and len(self.running) < self.cfg.max_num_seqs and not batch.preempted:
            seq = self.waiting.popleft()
            matched = self.pool.match_prefix(seq.token_ids, self._max_prefix_tokens(seq))
            seq.blocks = list(matched)
            seq.num_computed = len(matched) * self.block_size
            seq.num_published = len(matched)
            key = self._next_block_key(seq) if inflight is not None else None
            if key is not None and key in inflight:
                self._release(seq)
                deferred.append(seq)
                continue
            num_new = min(seq.num_tokens - seq.num_computed, budget)
            if not self._grow(seq, seq.num_computed + num_new):
                self._release(seq)      # give the matched blocks back; retry next step
                self.waiting.appendleft(seq)
                break
            if key is not None:
                inflight.add(key)
            self.prefix_hit_tokens += len(matched) * self.block_size
            seq.state = SeqState.RUNNING
            self.running.append(seq)
            req = seq.request
            if req.metrics.first_scheduled_time is None:
                req.metrics.first_scheduled_time = time.monotonic()
                req.metrics.num_cached_tokens = len(matched) * self.block_size
            batch.items.append(ScheduledSeq(seq, num_new, seq.num_computed + num_new == seq.num_tokens))
            budget -= num_new
        self.waiting.extendleft(reversed(deferred))

        batch.items.sort(key=lambda it: it.num_new != 1)   # stable: single-token items first
        batch.num_tokens = self.token_budget - budget
        return batch

    def _next_block_key(self, seq: Sequence):
        """Identity (the whole token prefix) of the next full block seq will compute, if any."""
        end = (seq.num_computed // self.block_size + 1) * self.block_size
        return hash(tuple(seq.token_ids[:end])) if end < seq.num_tokens else None

    def _inflight_blocks(self) -> set:
        keys = set()
        for seq in self.running:
            if seq.num_computed + self.block_size < seq.num_tokens:   # still prefilling a full block
                keys.add(self._next_block_key(seq))
        return keys

    def _max_prefix_tokens(self, seq: Sequence) -> int:
        # At least the last token is computed: its logits sample the next one. Prompt logprobs at
        # position p need the logits of p - 1, so a prefix hit must stop before that.
        limit = seq.num_tokens - 1
        req = seq.request
        if req.needs_prompt_logprobs:
            limit = min(limit, req.prompt_logprobs_done - 1)
        return limit

    def _longest_prefix_first(self) -> bool:
        policy = self.cfg.schedule_policy
        if policy != "auto":
            return policy == "lpm"
        # SGL programs (requests with a program id) wait on their previous step's KV: admitting the
        # longest cached prefix first keeps it hot. Plain traffic keeps arrival order, and a long
        # queue does too (sorting it every step would cost more than it saves, as in SGLang).
        return len(self.waiting) <= LPM_MAX_WAITING and any(s.request.program_id for s in self.waiting)

    def _sort_waiting_by_cached_prefix(self) -> None:
        """SGLang's longest-prefix-match policy: requests whose prefix is hot go first."""
        if not self.pool.prefix_caching:
            return
        def cached_blocks(seq: Sequence) -> int:
            return self.pool.cached_prefix_blocks(seq.token_ids, self._max_prefix_tokens(seq))
        self.waiting = deque(sorted(self.waiting, key=cached_blocks, reverse=True))
