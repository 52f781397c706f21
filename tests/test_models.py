"""Our forward pass equals HF transformers' for every supported family; loading and its errors."""
import json
import os
import shutil

import pytest
import torch

from hf_reference import assert_greedy_equal
from nbinfer import LLM, SamplingParams
from tiny_models import FAMILIES

PROMPTS = [
    "The quick brown fox",
    "请解释量子计算的基本原理",
    "A paged KV cache stores keys and values in fixed-size blocks. Continuous batching schedules",
    "def",
]


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_matches_hf_batched_ragged(family, model_dir, hf_ref):
    ref = hf_ref(family)
    with LLM(model_dir(family), num_kv_blocks=256, dtype="float32") as llm:
        outs = llm.generate(PROMPTS, SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=0))
    compared = 0
    for o in outs:
        c = o.outputs[0]
        assert len(c.token_ids) == 24 and c.finish_reason == "length"
        compared += assert_greedy_equal(ref, o.prompt_token_ids, c.token_ids, c.logprobs, f"{family}:{o.prompt!r}")
    assert compared >= 0.75 * 24 * len(PROMPTS)   # near-ties are rare with these weights


@pytest.mark.parametrize("family", ["llama3", "qwen2"])
def test_prompt_logprobs_match_hf(family, model_dir, hf_ref):
    ref = hf_ref(family)
    with LLM(model_dir(family), num_kv_blocks=64, dtype="float32") as llm:
        out = llm.generate(PROMPTS[2], SamplingParams(max_tokens=1, prompt_logprobs=2))[0]
    rows = ref.logprobs(out.prompt_token_ids)
    assert out.prompt_logprobs[0] is None
    for p in range(1, len(out.prompt_token_ids)):
        tok = out.prompt_token_ids[p]
        entry = out.prompt_logprobs[p]
        assert abs(entry[tok].logprob - float(rows[p - 1, tok])) < 1e-3
        assert entry[tok].rank == int((rows[p - 1] > rows[p - 1, tok]).sum()) + 1
        assert len(entry) >= 2 and all(lp.rank is not None for lp in entry.values())


def test_llama3_rope_matches_hf():
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from nbinfer.models.rope import inv_freq_and_scale
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    cfg = LlamaConfig(rope_theta=500000.0, max_position_embeddings=131072, rope_scaling=scaling)
    theirs, their_scale = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    ours, our_scale = inv_freq_and_scale(128, 500000.0, scaling, 131072)
    torch.testing.assert_close(ours, theirs.float())
    assert our_scale == their_scale


def test_yarn_rope_matches_hf():
    from transformers import Qwen2Config
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from nbinfer.models.rope import inv_freq_and_scale
    scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    cfg = Qwen2Config(rope_theta=1000000.0, max_position_embeddings=131072, rope_scaling=scaling,
                      hidden_size=1024, num_attention_heads=8)
    theirs, their_scale = ROPE_INIT_FUNCTIONS["yarn"](cfg, "cpu")
    ours, our_scale = inv_freq_and_scale(128, 1000000.0, scaling, 131072)
    torch.testing.assert_close(ours, theirs.float())
    assert our_scale == pytest.approx(their_scale)


def test_sharded_checkpoint_with_index(model_dir, hf_ref):
    path = model_dir("qwen3", max_shard_size="100KB")
    assert (path / "model.safetensors.index.json").exists()
    assert len(list(path.glob("*.safetensors"))) > 1
    with LLM(path, num_kv_blocks=64, dtype="float32") as llm:
        out = llm.generate(PROMPTS[0], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True))[0]
    assert assert_greedy_equal(hf_ref("qwen3"), out.prompt_token_ids, out.outputs[0].token_ids) > 0


def test_dtype_auto_is_bf16_only_where_the_hardware_computes_in_it(monkeypatch):
    """HF-parity tests above pass dtype="float32": auto is bf16 on CPUs with native bf16 (and CUDA)."""
    from nbinfer.engine.resolved import resolve_dtype
    from nbinfer.kernels import cpu_features
    cpu = torch.device("cpu")
    monkeypatch.setenv("NBINFER_CPU_BF16", "1")
    assert cpu_features.native_bf16() and resolve_dtype("auto", cpu) == torch.bfloat16
    monkeypatch.setenv("NBINFER_CPU_BF16", "0")
    assert not cpu_features.native_bf16() and resolve_dtype("auto", cpu) == torch.float32
    monkeypatch.delenv("NBINFER_CPU_BF16")
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    if "flags" in flags:                  # x86 Linux: detection agrees with the kernel's flag list
        assert cpu_features.native_bf16() == any(f in flags.split() for f in ("avx512_bf16", "amx_bf16"))
    assert resolve_dtype("float32", cpu) == torch.float32


def test_tied_embeddings_share_storage(model_dir):
    with LLM(model_dir("qwen2"), num_kv_blocks=16) as llm:
        m = llm.engine.runner.model
        assert m.lm_head.weight.data_ptr() == m.model.embed_tokens.weight.data_ptr()


def test_bad_path_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        LLM(str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="no config.json"):
        LLM(str(tmp_path))


def test_hub_id_offline_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ValueError, match="not a local folder and the Hugging Face hub could not provide"):
        LLM("nbinfer-test/definitely-not-a-model")


def test_hub_id_resolves_through_snapshot_download(monkeypatch, llama_dir):
    import huggingface_hub
    seen = {}

    def fake_snapshot_download(repo_id, revision=None, allow_patterns=None):
        seen.update(repo_id=repo_id, patterns=allow_patterns)
        return str(llama_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    with LLM("some-org/some-model", num_kv_blocks=16) as llm:
        assert llm.generate("The", SamplingParams(max_tokens=2))[0].outputs[0].token_ids
    assert seen["repo_id"] == "some-org/some-model" and "*.safetensors" in seen["patterns"]


def test_unknown_architecture_names_it(tmp_path, llama_dir):
    bad = tmp_path / "m"
    shutil.copytree(llama_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["architectures"] = ["GPTNeoXForCausalLM"]
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="GPTNeoXForCausalLM.*not support"):
        LLM(str(bad))


def test_missing_weights_name_the_path(tmp_path, llama_dir):
    bad = tmp_path / "m"
    shutil.copytree(llama_dir, bad)
    (bad / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="no .safetensors weights in"):
        LLM(str(bad))


def test_missing_tensor_is_reported(tmp_path, llama_dir):
    from safetensors.torch import load_file, save_file
    bad = tmp_path / "m"
    shutil.copytree(llama_dir, bad)
    weights = load_file(bad / "model.safetensors")
    del weights["model.layers.1.mlp.up_proj.weight"]
    save_file(weights, bad / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lacks 1 tensor"):
        LLM(str(bad))


def test_dtype_auto_is_fp32_on_cpu(shared_llm):
    assert shared_llm.engine.dtype == torch.float32
    assert shared_llm.stats().dtype == "float32"


def test_bf16_runs_on_cpu(llama_dir):
    with LLM(llama_dir, dtype="bfloat16", num_kv_blocks=16) as llm:
        out = llm.generate("The quick", SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))[0]
        assert len(out.outputs[0].token_ids) == 4
        assert llm.engine.runner.kv_cache.dtype == torch.bfloat16


def test_dummy_load_format_needs_no_weights(tmp_path, llama_dir):
    cfg_only = tmp_path / "m"
    shutil.copytree(llama_dir, cfg_only)
    (cfg_only / "model.safetensors").unlink()
    with LLM(str(cfg_only), load_format="dummy", num_kv_blocks=16) as llm:
        out = llm.generate("The", SamplingParams(max_tokens=4, ignore_eos=True))[0]
        assert len(out.outputs[0].token_ids) == 4
        norm = llm.engine.runner.model.model.norm.weight
        assert torch.all(norm == 1)


@pytest.mark.parametrize("family", FAMILIES)
def test_greedy_matches_hf_under_cache_hits_chunking_and_preemption(family, model_dir, hf_ref):
    """Every family, with prefix-cache hits, chunked prefill and preemption all forced in one run."""
    shared = PROMPTS[2] + " "
    prompts = [shared + p for p in PROMPTS] + [shared + PROMPTS[2]]
    params = SamplingParams(temperature=0, max_tokens=24, ignore_eos=True, logprobs=0)
    with LLM(model_dir(family), num_kv_blocks=20, block_size=8, max_num_batched_tokens=20, dtype="float32") as llm:
        first = llm.generate(prompts[0], params)[0]           # warms the prefix cache
        outs = [first] + llm.generate(prompts[1:], params)
        stats = llm.stats()
    assert stats.num_preempted_total > 0 and stats.prefix_hit_tokens > 0
    assert any(len(o.prompt_token_ids) > 20 for o in outs)  # prompts longer than the step budget
    ref = hf_ref(family)
    compared = sum(assert_greedy_equal(ref, o.prompt_token_ids, o.outputs[0].token_ids, o.outputs[0].logprobs,
                                       family) for o in outs)
    assert compared >= 0.75 * 24 * len(outs)
