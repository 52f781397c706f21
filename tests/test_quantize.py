"""Weight-only int8 (nbinfer/models/quantize.py): the rounding, the model it leaves, the option."""
import pytest
import torch

from nbinfer import LLM, SamplingParams
from nbinfer.engine.config import EngineConfig
from nbinfer.models.quantize import quantize_rows


def test_rows_round_to_the_nearest_step_of_their_own_scale():
    w = torch.randn(6, 40) * torch.tensor([1e-3, 1.0, 30.0, 0.5, 2.0, 1.0])[:, None]
    w[5] = 0.0
    q, scale = quantize_rows(w)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (6,)
    assert q.abs().max() <= 127 and (q[:5].abs().amax(dim=1) == 127).all()     # each row's largest value
    err = (q.float() * scale[:, None] - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-6 * scale[:, None]).all()
    assert not q[5].any() and torch.isfinite(scale).all()


def test_the_option_takes_int8_or_none():
    assert EngineConfig(quantization="int8").quantization == "int8" and EngineConfig().quantization is None
    with pytest.raises(ValueError, match="quantization must be 'int8'"):
        EngineConfig(quantization="int4")


@pytest.mark.parametrize("family", ["llama", "qwen2"])        # qwen2: the LM head is the embedding (tied)
def test_an_int8_engine_runs_the_dequantized_weights(model_dir, family):
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    with LLM(model_dir(family), num_kv_blocks=64) as llm:
        full = {n: p.detach().clone() for n, p in llm.engine.runner.model.named_parameters()}
    with LLM(model_dir(family), num_kv_blocks=64, quantization="int8") as llm:
        runner = llm.engine.runner
        for name, p in runner.model.named_parameters():
            if p.dim() == 2 and "embed" not in name:        # every matrix: within half a step of its row's scale
                step = full[name].abs().amax(dim=1, keepdim=True) / 127
                assert not torch.equal(p, full[name]) and ((p - full[name]).abs() <= step / 2 + 1e-6).all(), name
        q, scale = runner.int8[runner.model.lm_head.weight.data_ptr()]
        assert torch.equal(q.float() * scale[:, None], runner.model.lm_head.weight)
        assert runner.weights_bytes < sum(p.numel() * p.element_size() for p in runner.model.parameters()) / 2
        assert llm.generate("The quick brown fox", params)[0].outputs[0].token_ids
