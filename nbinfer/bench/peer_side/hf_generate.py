"""HF transformers' generate as a benchmark peer: left-padded batches in arrival order."""
from __future__ import annotations

import time

from timing import PeakMemory, new_result, record_request


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


class HFGenerate:
    name = "hf-generate"

    def __init__(self, job: dict):
        import torch
        import transformers
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.set_num_threads(job["threads"])
        dtype = getattr(torch, job["dtype"])
        self.device = job["device"]
        if job["dummy"]:        # random weights of the named shape: the same compute as real ones
            with torch.device(self.device):
                model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(job["model"]), dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=dtype).to(self.device)
        self.model = model.eval()
        self.batch_size = job.get("batch_size")
        self.info = {"dtype": job["dtype"], "version": f"transformers {transformers.__version__}"}

    def run(self, prompts: list[list[int]], output_lens: list[int]) -> dict:
        """One padded batch (or batches of --hf-batch-size), halved on CUDA out-of-memory."""
        import torch

        size = self.batch_size or len(prompts)
        while True:
            try:
                res = self._run(prompts, output_lens, size)
                res["batch_size"] = size
                return res
            except torch.OutOfMemoryError:
                if size == 1:
                    raise
                torch.cuda.empty_cache()
                size //= 2

    def _run(self, prompts, output_lens, batch_size: int, pad_id: int = 0) -> dict:
        """Each batch generates until its longest request is done (min_new_tokens = max_new_tokens
        stands in for ignore_eos); tokens/s counts only the tokens each request asked for."""
        import torch

        res = new_result(self.name, prompts, output_lens)
        with PeakMemory(self.device) as mem, torch.inference_mode():
            t0 = time.monotonic()
            for start in range(0, len(prompts), batch_size):
                batch, wants = prompts[start:start + batch_size], output_lens[start:start + batch_size]
                width = max(map(len, batch))
                ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
                mask = torch.zeros_like(ids)
                for i, p in enumerate(batch):
                    ids[i, width - len(p):] = torch.tensor(p)
                    mask[i, width - len(p):] = 1
                clock, longest = _StepClock(), max(wants)
                seqs = self.model.generate(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                           max_new_tokens=longest, min_new_tokens=longest, do_sample=False,
                                           pad_token_id=pad_id, streamer=clock)
                for i, want in enumerate(wants):
                    record_request(res, t0, clock.times[0], clock.times[want - 1], want,
                                   seqs[i, width:width + want].tolist())
            res["wall_s"] = time.monotonic() - t0
        res["peak_mem_bytes"] = mem.peak
        return res
