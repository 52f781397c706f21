"""GPU-only checks (skipped without CUDA): memory returns to baseline after shutdown, bf16 default."""
import gc

import pytest
import torch

from nbinfer import LLM, SamplingParams

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_shutdown_returns_gpu_memory_to_baseline(llama_dir):
    torch.cuda.synchronize()
    gc.collect()
    baseline = torch.cuda.memory_allocated()
    for _ in range(2):   # and a second engine can be built afterwards
        llm = LLM(llama_dir, gpu_memory_utilization=0.3)
        assert llm.engine.dtype == torch.bfloat16
        out = llm.generate(["The quick brown fox"] * 4, SamplingParams(max_tokens=16, ignore_eos=True))
        assert all(len(o.outputs[0].token_ids) == 16 for o in out)
        llm.shutdown()
        del llm, out
        gc.collect()
        torch.cuda.synchronize()
        assert torch.cuda.memory_allocated() == baseline
