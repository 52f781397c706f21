"""What a run measured, as plain data shared by nbinfer's side and the peer side (stdlib only)."""
from __future__ import annotations

import os
import threading
import time


def new_result(system: str, prompts: list[list[int]], output_lens: list[int]) -> dict:
    """An empty run record; wall_s and the per-request lists are filled by the runner."""
    return {"system": system, "wall_s": 0.0, "input_tokens": sum(map(len, prompts)),
            "output_tokens": sum(output_lens), "ttft_s": [], "itl_s": [], "e2e_s": [], "token_ids": [],
            "peak_mem_bytes": 0}


def record_request(res: dict, t0: float, first: float, last: float, n: int, token_ids: list[int]) -> None:
    """One request's timings: first token at `first`, its n-th (last) at `last`, all from t0 (arrival)."""
    res["ttft_s"].append(first - t0)
    res["e2e_s"].append(last - t0)
    if n > 1:
        res["itl_s"].append((last - first) / (n - 1))
    res["token_ids"].append(list(token_ids))


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
