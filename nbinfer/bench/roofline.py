"""CUDA roofline: decode is memory-bound, so a step can be no faster than
(weight bytes + KV bytes it reads) / measured device-to-device copy bandwidth."""
from __future__ import annotations

from dataclasses import dataclass


def copy_bandwidth(nbytes: int = 1 << 30, iters: int = 20) -> float:
    """Bytes/s of a large device-to-device copy, counting bytes read plus bytes written."""
    import torch

    src = torch.randn(nbytes // 4, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(iters):
        start.record()
        dst.copy_(src)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    del src, dst
    torch.cuda.empty_cache()
    return 2 * nbytes / times[len(times) // 2]


@dataclass(frozen=True)
class DecodeProbe:
    batch: int
    context: int
    step_s: float            # measured: median inter-token latency
    bytes_per_step: int      # weights + KV read
    roofline_s: float        # bytes_per_step / bandwidth

    @property
    def fraction(self) -> float:
        return self.roofline_s / self.step_s


def probe_decode(llm, batch: int, context: int, bandwidth: float, new_tokens: int = 64) -> DecodeProbe:
    """Decode `batch` sequences of `context` tokens in lockstep; compare the step time to the roofline."""
    import random
    import statistics

    from nbinfer import SamplingParams

    e = llm.engine
    m = e.model_config
    vocab = m.vocab_size
    rng = random.Random(batch * 7919 + context)
    prompts = [{"prompt_token_ids": [rng.randrange(10, vocab) for _ in range(context)]} for _ in range(batch)]
    params = SamplingParams(temperature=0, max_tokens=new_tokens, ignore_eos=True)
    llm.generate(prompts[:1], SamplingParams(max_tokens=2))     # warm-up (graph capture, allocator)
    llm.reset_prefix_cache()
    outs = llm.generate(prompts, params)
    itls = [(o.metrics.finished_time - o.metrics.first_token_time) / (new_tokens - 1) for o in outs]
    step = statistics.median(itls)
    kv_per_token = 2 * m.num_layers * m.num_kv_heads * m.head_dim * e.dtype.itemsize
    mean_ctx = context + new_tokens / 2
    nbytes = e.runner.weights_bytes + int(batch * mean_ctx * kv_per_token)
    return DecodeProbe(batch, context, step, nbytes, nbytes / bandwidth)
