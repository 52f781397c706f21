"""nbinfer's side of a benchmark run (the peers run in their own processes: peers.py)."""
from __future__ import annotations

import time

from .metrics import PeakMemory, RunResult
from .peer_side.timing import new_result, record_request
from .workloads import Workload


def run_nbinfer(llm, workload: Workload, device: str) -> RunResult:
    """All requests arrive at once (offline throughput); per-request timings from the engine."""
    from nbinfer import SamplingParams

    llm.reset_prefix_cache()          # repetitions must not hit the previous repetition's prompts
    res = new_result("nbinfer", workload.prompts, workload.output_lens)
    with PeakMemory(device) as mem:
        t0 = time.monotonic()
        handles = [llm.submit({"prompt_token_ids": p}, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
                   for p, n in zip(workload.prompts, workload.output_lens)]
        outs = [h.result() for h in handles]
        res["wall_s"] = time.monotonic() - t0
    for o in outs:
        ids = o.outputs[0].token_ids
        record_request(res, t0, o.metrics.first_token_time, o.metrics.finished_time, len(ids), ids)
    res["output_tokens"] = sum(len(o.outputs[0].token_ids) for o in outs)
    res["peak_mem_bytes"] = mem.peak
    res["prefix_hit_rate"] = sum(o.metrics.num_cached_tokens for o in outs) / workload.input_tokens
    return RunResult.from_dict(res)
