"""vLLM as a benchmark peer: every request added at once, then its engine stepped to completion.

Stepping vLLM's LLMEngine ourselves (rather than LLM.generate) timestamps each request's first and
last token as the engine returns them, the same per-request timings nbinfer reports. The engine core
runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0), so its memory is this process's RSS.
"""
from __future__ import annotations

import os
import time

from timing import PeakMemory, new_result, record_request


class VLLMEngine:
    name = "vllm"

    def __init__(self, job: dict):
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")     # GiB; the batch workloads need ~1
        import vllm
        from vllm import LLM

        self.device = job["device"]
        self.llm = LLM(model=job["model"], dtype=job["dtype"], load_format="dummy" if job["dummy"] else "auto",
                       seed=0, max_num_seqs=job.get("max_num_seqs", 256))
        self.info = {"dtype": job["dtype"], "version": f"vllm {vllm.__version__}"}

    def run(self, prompts: list[list[int]], output_lens: list[int]) -> dict:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        self.llm.reset_prefix_cache()   # repetitions must not hit the previous repetition's prompts
        res = new_result(self.name, prompts, output_lens)
        index: dict[str, int] = {}          # vLLM may suffix the id we pass: map both to the request
        first, finished = [0.0] * len(prompts), [0.0] * len(prompts)
        tokens: list[list[int]] = [[] for _ in prompts]
        with PeakMemory(self.device) as mem:
            t0 = time.monotonic()
            for i, (p, n) in enumerate(zip(prompts, output_lens)):
                params = SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True,
                                        output_kind=RequestOutputKind.DELTA)
                index[str(i)] = index[engine.add_request(str(i), {"prompt_token_ids": p}, params)] = i
            while engine.has_unfinished_requests():
                for out in engine.step():
                    now, i = time.monotonic(), index[out.request_id]
                    tokens[i].extend(out.outputs[0].token_ids)
                    first[i] = first[i] or now
                    if out.finished:
                        finished[i] = now
            res["wall_s"] = time.monotonic() - t0
        for i in range(len(prompts)):
            record_request(res, t0, first[i], finished[i], len(tokens[i]), tokens[i])
        res["output_tokens"] = sum(map(len, tokens))
        res["peak_mem_bytes"] = mem.peak
        return res
