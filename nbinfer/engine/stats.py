"""EngineStats: the cheap, thread-safe snapshot the dashboard and `%nbinfer status` read."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from .sequence import SeqState


@dataclass(frozen=True)
class RequestStats:
    request_id: str
    state: str                  # "waiting" | "running" | "preempted"
    prompt_tokens: int
    output_tokens: int          # summed over the request's n sequences
    max_tokens: int
    block_ids: tuple[int, ...]
    program_id: str | None = None
    n: int = 1                  # samples (output_tokens counts all of them; max_tokens is per sample)
    origin: str = "api"         # who submitted it: "api" (this process), "server" (HTTP clients), ...


@dataclass(frozen=True)
class EngineStats:
    blocks_total: int
    blocks_free: int
    blocks_used: int
    blocks_cached: int
    block_size: int
    num_running: int
    num_waiting: int
    num_preempted_total: int
    prompt_tokens_total: int
    generation_tokens_total: int
    prefix_hit_tokens: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    weights_bytes: int
    kv_cache_bytes: int
    requests: dict[str, RequestStats] = field(default_factory=dict)
    # beyond the contract, for the dashboard and benchmarks
    cached_block_ids: tuple[int, ...] = ()   # unreferenced blocks kept by the prefix cache
    shared_block_ids: tuple[int, ...] = ()   # blocks referenced by more than one sequence
    peak_num_running: int = 0
    steps_total: int = 0
    model: str = ""
    device: str = ""
    dtype: str = ""
    max_model_len: int = 0
    engine_error: str | None = None          # set once an error stopped the engine thread: it serves no more

    @property
    def alive(self) -> bool:
        return self.engine_error is None

    @property
    def occupancy(self) -> float:
        """Fraction of KV blocks referenced by requests."""
        return self.blocks_used / self.blocks_total if self.blocks_total else 0.0


@dataclass
class Totals:
    """Counters since load, kept by the engine thread."""
    prompt: int = 0
    generation: int = 0
    steps: int = 0
    peak_running: int = 0


def snapshot(engine, prefill_rate: float, decode_rate: float) -> EngineStats:
    """EngineStats of an Engine; the caller holds the engine's state lock."""
    reqs = {}
    holders: dict[int, int] = {}
    for rid, req in engine.requests.items():
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
                                 req.max_tokens, blocks, req.program_id, req.params.n, req.origin)
    pool, sched, runner, totals = engine.pool, engine.scheduler, engine.runner, engine.totals
    return EngineStats(
        blocks_total=pool.num_blocks, blocks_free=pool.num_free, blocks_used=pool.num_used,
        blocks_cached=pool.num_cached, block_size=pool.block_size,
        num_running=len(sched.running), num_waiting=len(sched.waiting),
        num_preempted_total=sched.num_preempted_total,
        prompt_tokens_total=totals.prompt, generation_tokens_total=totals.generation,
        prefix_hit_tokens=sched.prefix_hit_tokens,
        prefill_tokens_per_s=prefill_rate, decode_tokens_per_s=decode_rate,
        weights_bytes=runner.weights_bytes, kv_cache_bytes=runner.kv_cache_bytes,
        requests=reqs, cached_block_ids=tuple(pool.cached_block_ids()),
        shared_block_ids=tuple(b for b, n in holders.items() if n > 1),
        peak_num_running=totals.peak_running, steps_total=totals.steps,
        model=str(engine.cfg.model or "default"), device=str(engine.device),
        dtype=str(engine.dtype).replace("torch.", ""), max_model_len=engine.max_model_len,
        engine_error=engine.error)


class ThroughputMeter:
    """Tokens per second over a sliding window of recent steps; 0 as soon as the engine is idle.

    While it has work the engine runs steps back to back, so a pause longer than IDLE_S (or than twice
    the longest recent step, when steps are slow) means nothing is running: the rates then read 0 at
    once, rather than averaging the finished run over the rest of the window ("idle · 239 tok/s").
    """

    IDLE_S = 1.0

    def __init__(self, window_s: float = 5.0, clock=time.monotonic):
        self.window_s = window_s
        self._clock = clock
        self._events: deque[tuple[float, float, int, int]] = deque()   # (start, end, prefill, decode)
        self._lock = threading.Lock()

    def record(self, step_start: float, prefill_tokens: int, decode_tokens: int) -> None:
        """A step that began at step_start (the meter's clock, time.monotonic()) and has just ended."""
        now = self._clock()
        with self._lock:
            self._events.append((step_start, now, prefill_tokens, decode_tokens))
            self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and now - self._events[0][1] > self.window_s:
            self._events.popleft()

    def rates(self) -> tuple[float, float]:
        now = self._clock()
        with self._lock:
            self._trim(now)
            if not self._events:
                return 0.0, 0.0
            longest = max(end - start for start, end, _, _ in self._events)
            if now - self._events[-1][1] > max(self.IDLE_S, 2 * longest):
                return 0.0, 0.0
            prefill = sum(e[2] for e in self._events)
            decode = sum(e[3] for e in self._events)
            first = self._events[0][0]
        # over the time since the oldest counted step began: a short burst reads at its true rate
        span = max(now - first, 1e-6)
        return prefill / span, decode / span
