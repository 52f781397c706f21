"""The two systems under test: nbinfer's engine and HF transformers' generate, on one workload."""
from __future__ import annotations

import time

from .metrics import PeakMemory, RunResult
from .workloads import Workload


def run_nbinfer(llm, workload: Workload, device: str) -> RunResult:
    """All requests arrive at once (offline throughput); per-request timings from the engine."""
    from nbinfer import SamplingParams

    llm.reset_prefix_cache()          # repetitions must not hit the previous repetition's prompts
    with PeakMemory(device) as mem:
        t0 = time.monotonic()
        handles = [llm.submit({"prompt_token_ids": p}, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
                   for p, n in zip(workload.prompts, workload.output_lens)]
        outs = [h.result() for h in handles]
        wall = time.monotonic() - t0
    res = RunResult("nbinfer", wall, workload.input_tokens, sum(len(o.outputs[0].token_ids) for o in outs),
                    peak_mem_bytes=mem.peak)
    for o in outs:
        m, n = o.metrics, len(o.outputs[0].token_ids)
        res.ttft_s.append(m.first_token_time - t0)
        res.e2e_s.append(m.finished_time - t0)
        if n > 1:
            res.itl_s.append((m.finished_time - m.first_token_time) / (n - 1))
    res.prefix_hit_rate = sum(o.metrics.num_cached_tokens for o in outs) / workload.input_tokens
    return res


class _StepClock:
    """A generate() streamer that timestamps every decoding step (the first put is the prompt)."""

    def __init__(self):
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value):
        if self._prompt_seen:
            self.times.append(time.monotonic())
        self._prompt_seen = True

    def end(self):
        pass


def load_hf(model_dir, dtype, device: str, dummy: bool):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if dummy:
        cfg = AutoConfig.from_pretrained(model_dir)
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device)
    return model.eval()


def run_hf(model, workload: Workload, device: str, batch_size: int, pad_id: int = 0) -> RunResult:
    """HF's best effort: left-padded batches of `batch_size` in arrival order, each generating until
    its longest request is done (min_new_tokens = max_new_tokens stands in for ignore_eos)."""
    import torch

    n = len(workload.prompts)
    res = RunResult("hf-generate", 0.0, workload.input_tokens, workload.output_tokens)
    with PeakMemory(device) as mem, torch.inference_mode():
        t0 = time.monotonic()
        for start in range(0, n, batch_size):
            prompts = workload.prompts[start:start + batch_size]
            outs = workload.output_lens[start:start + batch_size]
            width = max(map(len, prompts))
            ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, p in enumerate(prompts):
                ids[i, width - len(p):] = torch.tensor(p)
                mask[i, width - len(p):] = 1
            clock = _StepClock()
            longest = max(outs)
            model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=longest,
                           min_new_tokens=longest, do_sample=False, pad_token_id=pad_id, streamer=clock)
            for want in outs:
                first, last = clock.times[0], clock.times[want - 1]
                res.ttft_s.append(first - t0)
                res.e2e_s.append(last - t0)
                if want > 1:
                    res.itl_s.append((last - first) / (want - 1))
        res.wall_s = time.monotonic() - t0
    res.peak_mem_bytes = mem.peak
    return res


def run_hf_best_effort(model, workload: Workload, device: str, batch_size: int | None) -> tuple[RunResult, int]:
    """One padded batch if it fits, else halve the batch until it does (CUDA OOM)."""
    import torch

    size = batch_size or len(workload.prompts)
    while True:
        try:
            return run_hf(model, workload, device, size), size
        except torch.OutOfMemoryError:
            if size == 1:
                raise
            torch.cuda.empty_cache()
            size //= 2
