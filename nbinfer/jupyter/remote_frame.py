"""A dashboard frame for a remote server, read from its Prometheus /metrics.

vLLM, SGLang and `nbinfer serve` all report requests running and waiting, KV-cache usage and token
counters (vLLM's names, which nbinfer serves too, or SGLang's); token rates come from the counters'
change between two reads. What a remote cannot show is said, not drawn: its KV pool's blocks (no
block map), its requests one by one, its memory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

INTERVAL_S = 0.5           # /metrics at most twice a second, however often the dashboard ticks
RETRY_S = 5.0              # after a failed read
TIMEOUT_S = 2.0            # one read: a server that went away must not stall a cell's end

# each a list of names, the first one present wins: vLLM's (and nbinfer's), vLLM < 0.10's, SGLang's
RUNNING = ("vllm:num_requests_running", "sglang:num_running_reqs")
WAITING = ("vllm:num_requests_waiting", "sglang:num_queue_reqs")
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")   # a fraction
PROMPT_TOKENS = ("vllm:prompt_tokens_total", "sglang:prompt_tokens_total")
GENERATION_TOKENS = ("vllm:generation_tokens_total", "sglang:generation_tokens_total")
PREFIX_HITS = ("vllm:prefix_cache_hits_total", "sglang:cached_tokens_total")
PREEMPTIONS = ("vllm:num_preemptions_total",)


@dataclass(frozen=True)
class RemoteFrame:
    server: str                          # "vllm", "sglang", "nbinfer", "openai-compatible"
    version: str | None
    url: str
    api: str
    model: str
    num_running: int = 0
    num_waiting: int = 0
    kv_usage: float | None = None        # fraction of the KV cache in use
    kv_capacity: str | None = None       # "4,096 blocks × 16 tokens", "161,721 token slots"
    prompt_tokens_total: int | None = None
    generation_tokens_total: int | None = None
    prefix_hit_tokens: int | None = None
    num_preempted_total: int | None = None
    prefill_tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    problem: str | None = None           # why /metrics told nothing

    @property
    def busy(self) -> bool:
        return bool(self.num_running or self.num_waiting)

    @property
    def occupancy(self) -> float:
        return self.kv_usage or 0.0

    @property
    def title(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"{self.server}{version} at {self.url}"

    def not_shown(self) -> list[str]:
        """What this frame cannot show, in words."""
        missing = ["the block map (a remote pool's blocks are not visible over HTTP)",
                   "requests one by one (/metrics counts them)", "memory (weights and KV bytes)"]
        if not self.problem and self.kv_usage is None:
            missing.insert(0, "KV-cache usage (not in its /metrics)")
        return missing


class RemoteMetricsReader:
    """RemoteFrames for one RemoteLLM, read from /metrics at most every INTERVAL_S."""

    def __init__(self, remote, clock=time.monotonic):
        self.remote = remote
        self.clock = clock
        caps = remote.capabilities
        self._blank = RemoteFrame(caps.server, caps.version, caps.url, caps.api, caps.model)
        self._frame: RemoteFrame | None = None
        self._last = 0.0
        self._counters: tuple[float, float, float] | None = None     # (time, prompt, generated)

    def frame(self) -> RemoteFrame:
        now = self.clock()
        if self._frame is not None and now - self._last < (RETRY_S if self._frame.problem else INTERVAL_S):
            return self._frame
        try:
            samples = self.remote.metric_samples(timeout=TIMEOUT_S)
        except Exception as e:      # noqa: BLE001 -- the dashboard says what went wrong, once per retry
            frame = replace(self._blank, problem=self._problem(e))
            self._counters = None
        else:
            frame = self._build(samples, now)
        self._frame, self._last = frame, now
        return frame

    def _problem(self, e: Exception) -> str:
        caps = self.remote.capabilities
        if getattr(e, "status", None) == 404:
            hint = " (SGLang serves it only when started with --enable-metrics)" if caps.server == "sglang" else ""
            return f"the server has no /metrics{hint}"
        return f"reading its /metrics failed: {' '.join(str(e).split()) or type(e).__name__}"

    def _build(self, samples: list, now: float) -> RemoteFrame:
        sums: dict[str, float] = {}
        for name, _, value in samples:
            sums[name] = sums.get(name, 0.0) + value

        def first(names):
            return next((sums[n] for n in names if n in sums), None)

        def count(names):
            v = first(names)
            return None if v is None else int(v)

        prompt, generated = count(PROMPT_TOKENS), count(GENERATION_TOKENS)
        prefill = decode = 0.0
        if prompt is not None and generated is not None:
            if self._counters is not None and now > self._counters[0]:
                dt = now - self._counters[0]
                prefill = max(0.0, (prompt - self._counters[1]) / dt)
                decode = max(0.0, (generated - self._counters[2]) / dt)
            self._counters = (now, prompt, generated)
        return replace(self._blank, num_running=count(RUNNING) or 0, num_waiting=count(WAITING) or 0,
                       kv_usage=first(KV_USAGE), kv_capacity=_capacity(samples, sums),
                       prompt_tokens_total=prompt, generation_tokens_total=generated,
                       prefix_hit_tokens=count(PREFIX_HITS), num_preempted_total=count(PREEMPTIONS),
                       prefill_tokens_per_s=prefill, decode_tokens_per_s=decode)


def _capacity(samples: list, sums: dict) -> str | None:
    """The KV cache's size in words, from whichever server's names are there."""
    if "nbinfer:kv_blocks_total" in sums:
        return f"{int(sums['nbinfer:kv_blocks_total']):,} blocks"
    for name, labels, _ in samples:             # vLLM: the cache config, as labels of an info gauge
        if name == "vllm:cache_config_info" and labels.get("num_gpu_blocks") not in (None, "", "None"):
            size = labels.get("block_size")
            per = f" × {size} tokens" if size not in (None, "", "None") else ""
            try:
                return f"{int(labels['num_gpu_blocks']):,} blocks{per}"
            except ValueError:
                break
    if "sglang:max_total_num_tokens" in sums:
        return f"{int(sums['sglang:max_total_num_tokens']):,} token slots"
    return None
