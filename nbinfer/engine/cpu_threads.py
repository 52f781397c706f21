"""How many intra-op threads a CPU step (or a loop of small ops in it) should use.

The engine's forward runs on its own thread, and on a CPU every OpenMP region entered from a thread
other than the main one costs tens of microseconds of hand-off (measured here: a 4.8k-element
softmax takes 6 us on the main thread, 100 us on another with 2 threads, 6 us with 1). A decode step
of a small model is hundreds of such small ops, so one thread is faster; a bigger model's matmuls are
large enough that all threads win (tiny 4-layer model, 32 decodes: 33 ms on 1 thread vs 45 ms on 2;
Qwen2.5-0.5B shape: 500 ms vs 400 ms). Which side a step falls on depends on the model, the batch
and the machine, so the engine tries both for each step size and keeps the faster. Steps of
ALL_THREADS_FROM tokens and more (long prefill chunks) are GEMM-bound and take every thread without
a trial: trying one thread there cost whole seconds (SmolLM2-135M, a 2048-token chunk: 8.9 s on one
thread, 5.1 s on two), and a batch's prefill is only a few such steps.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager

import torch

TRIALS = 3          # timed steps per candidate and step-size bucket before deciding
ALL_THREADS_FROM = 256


class ThreadTuner:
    def __init__(self, max_threads: int):
        self.candidates = sorted({1, max_threads})
        self._times: dict[int, dict[int, list[float]]] = {}
        self.choice: dict[int, int] = {}          # bucket -> chosen thread count

    @staticmethod
    def bucket(num_tokens: int) -> int:
        return max(num_tokens, 1).bit_length()     # powers of two: 1, 2-3, 4-7, ...

    def _next(self, bucket: int) -> int:
        if bucket >= self.bucket(ALL_THREADS_FROM):
            self.choice[bucket] = max(self.candidates)
        if bucket in self.choice:
            return self.choice[bucket]
        times = self._times.setdefault(bucket, {c: [] for c in self.candidates})
        return min(self.candidates, key=lambda c: len(times[c]))   # alternate: drift hits both alike

    def _record(self, bucket: int, threads: int, seconds: float) -> None:
        times = self._times[bucket]
        times[threads].append(seconds)
        if all(len(t) >= TRIALS for t in times.values()):
            self.choice[bucket] = min(self.candidates, key=lambda c: statistics.median(times[c]))

    @contextmanager
    def step(self, num_tokens: int):
        """Run one step's forward with the thread count chosen (or being tried) for its size."""
        if len(self.candidates) == 1:
            yield
            return
        b = self.bucket(num_tokens)
        threads = self._next(b)
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        start = time.perf_counter()
        try:
            yield
        finally:
            if b not in self.choice:
                self._record(b, threads, time.perf_counter() - start)
            torch.set_num_threads(previous)


@contextmanager
def small_ops(device: torch.device):
    """Run a loop of small CPU ops on one intra-op thread. Each OpenMP region entered from a thread
    other than the main one (the engine thread) costs ~50 us of hand-off (measured on 2 cores), which
    for per-sequence ops of a few microseconds of work is the whole cost; splitting them gains nothing."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
