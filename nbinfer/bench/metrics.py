"""What one benchmark run measured, and how runs are summarised (medians over repetitions)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields

from .peer_side.timing import PeakMemory  # noqa: F401  (one sampler for nbinfer and the peers)


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
    token_ids: list[list[int]] = field(default_factory=list)    # each request's output, in order
    batch_size: int | None = None       # HF generate: the padded batch size it ran with

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

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


def agreement(ours: list[list[int]], theirs: list[list[int]]) -> float | None:
    """Mean share of each request's output that matches ours up to the first differing token
    (1.0: the same greedy tokens everywhere); None where either side has no tokens."""
    if not ours or len(ours) != len(theirs):
        return None
    shares = []
    for a, b in zip(ours, theirs):
        same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        shares.append(same / max(len(a), 1))
    return statistics.fmean(shares)


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
    dtype: str = ""
    load_s: float = float("nan")
    match: float | None = None          # agreement() with nbinfer's tokens (None for nbinfer itself)

    @property
    def decode_tps(self) -> float:
        """Single-stream decode speed: one over the median inter-token latency."""
        return 1.0 / self.itl_p50 if self.itl_p50 > 0 else float("nan")

    @classmethod
    def of(cls, runs: list[RunResult], **extra) -> "Summary":
        med = statistics.median
        return cls(
            system=runs[0].system,
            output_tps=med(r.output_tps for r in runs), total_tps=med(r.total_tps for r in runs),
            ttft_p50=med(percentile(r.ttft_s, 0.5) for r in runs), ttft_p90=med(percentile(r.ttft_s, 0.9) for r in runs),
            itl_p50=med(percentile(r.itl_s, 0.5) for r in runs), itl_p90=med(percentile(r.itl_s, 0.9) for r in runs),
            e2e_p50=med(percentile(r.e2e_s, 0.5) for r in runs), e2e_p90=med(percentile(r.e2e_s, 0.9) for r in runs),
            peak_mem_bytes=max(r.peak_mem_bytes for r in runs),
            prefix_hit_rate=None if runs[0].prefix_hit_rate is None else med(r.prefix_hit_rate for r in runs),
            reps=len(runs), **extra)
