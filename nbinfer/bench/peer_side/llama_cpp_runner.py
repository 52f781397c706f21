"""llama.cpp (llama-cpp-python) as a benchmark peer: a GGUF, one sequence at a time.

llama-cpp-python's Llama object holds one sequence, so a batch workload runs its requests one after
another (each request's TTFT includes the wait for those before it, as a user would see it).
"""
from __future__ import annotations

import time

from timing import PeakMemory, new_result, record_request

# general.file_type of a GGUF (llama.cpp's llama_ftype) -> the name llama.cpp prints
FILE_TYPES = {0: "f32", 1: "f16", 2: "q4_0", 3: "q4_1", 7: "q8_0", 8: "q5_0", 9: "q5_1", 10: "q2_k",
              12: "q3_k_m", 14: "q4_k_s", 15: "q4_k_m", 16: "q5_k_s", 17: "q5_k_m", 18: "q6_k", 32: "bf16"}


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, job: dict):
        import llama_cpp

        if not job.get("gguf"):
            raise ValueError("the llama-cpp peer needs a GGUF file: pass --gguf PATH")
        self.device = "cpu"
        self.job = job
        self.llm = None
        self.n_ctx = 0
        self._open(job.get("n_ctx") or 2048)
        ftype = int(self.llm.metadata.get("general.file_type", -1))
        self.info = {"dtype": FILE_TYPES.get(ftype, f"gguf type {ftype}"),
                     "version": f"llama-cpp-python {llama_cpp.__version__}"}

    def _open(self, n_ctx: int) -> None:
        from llama_cpp import Llama

        threads = self.job["threads"]
        self.llm = Llama(model_path=self.job["gguf"], n_ctx=n_ctx, n_batch=512, n_threads=threads,
                         n_threads_batch=threads, n_gpu_layers=-1 if self.job["device"].startswith("cuda") else 0,
                         seed=0, verbose=False)
        self.n_ctx = n_ctx

    def run(self, prompts: list[list[int]], output_lens: list[int]) -> dict:
        need = max(len(p) + n for p, n in zip(prompts, output_lens))
        if need > self.n_ctx:       # a context that holds the longest request (outside the timing)
            del self.llm
            self._open(need)
        res = new_result(self.name, prompts, output_lens)
        with PeakMemory(self.device) as mem:
            t0 = time.monotonic()
            for prompt, want in zip(prompts, output_lens):
                self.llm.reset()            # no prefix reuse from the previous request or repetition
                tokens, stamps = [], []
                # top_k=1: greedy; generate() never stops at EOS by itself (ignore_eos)
                for tok in self.llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
                    stamps.append(time.monotonic())
                    tokens.append(tok)
                    if len(tokens) == want:
                        break
                record_request(res, t0, stamps[0], stamps[-1], want, tokens)
            res["wall_s"] = time.monotonic() - t0
        res["peak_mem_bytes"] = mem.peak
        return res
