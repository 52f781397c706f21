"""EngineStats: the cheap, thread-safe snapshot the dashboard and `%nbinfer status` read."""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field


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

    @property
    def occupancy(self) -> float:
        """Fraction of KV blocks referenced by requests."""
        return self.blocks_used / self.blocks_total if self.blocks_total else 0.0


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
