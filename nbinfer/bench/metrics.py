"""What one benchmark run measured, and how runs are summarised (medians over repetitions)."""
from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field


@dataclass
class RunResult:
    system: str
    wall_s: float
    input_tokens: int
    output_tokens: int                  # useful tokens: what each request asked for
    ttft_s: list[float] = field(default_factory=list)
    itl_s: list[float] = field(default_factory=list)
    e2e_s: list[float] = field(default_factory=list)
    peak_mem_bytes: int = 0
    prefix_hit_rate: float | None = None

    @property
    def output_tps(self) -> float:
        return self.output_tokens / self.wall_s

    @property
    def total_tps(self) -> float:
        return (self.input_tokens + self.output_tokens) / self.wall_s


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


@dataclass(frozen=True)
class Summary:
    system: str
    output_tps: float
    total_tps: float
    ttft_p50: float
    ttft_p90: float
    itl_p50: float
    itl_p90: float
    e2e_p50: float
    e2e_p90: float
    peak_mem_bytes: int
    prefix_hit_rate: float | None
    reps: int

    @classmethod
    def of(cls, runs: list[RunResult]) -> "Summary":
        med = statistics.median
        return cls(
            system=runs[0].system,
            output_tps=med(r.output_tps for r in runs), total_tps=med(r.total_tps for r in runs),
            ttft_p50=med(percentile(r.ttft_s, 0.5) for r in runs), ttft_p90=med(percentile(r.ttft_s, 0.9) for r in runs),
            itl_p50=med(percentile(r.itl_s, 0.5) for r in runs), itl_p90=med(percentile(r.itl_s, 0.9) for r in runs),
            e2e_p50=med(percentile(r.e2e_s, 0.5) for r in runs), e2e_p90=med(percentile(r.e2e_s, 0.9) for r in runs),
            peak_mem_bytes=max(r.peak_mem_bytes for r in runs),
            prefix_hit_rate=None if runs[0].prefix_hit_rate is None else med(r.prefix_hit_rate for r in runs),
            reps=len(runs))


class PeakMemory:
    """Peak device memory (CUDA allocator) or peak process RSS (CPU, sampled) over a region."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        if self.cuda:
            import torch
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            with open("/proc/self/statm") as f:
                self.peak = max(self.peak, int(f.read().split()[1]) * page)
            time.sleep(0.02)

    def __exit__(self, *exc):
        if self.cuda:
            import torch
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()
