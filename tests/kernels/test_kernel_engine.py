"""The whole engine on the Triton path gives the torch backend's greedy tokens; decode-graph padding.

On CPU the kernels run under Triton's interpreter, and the model's fused ops are forced onto their
Triton kernels too, so every kernel the model uses on a GPU is exercised here end to end."""
import numpy as np
import pytest
import torch

from nbinfer import LLM, SamplingParams
from nbinfer.engine.cuda_graph import DecodeGraphs, batch_buckets
from nbinfer.kernels import ops

NEAR_TIE = 1e-3
SHARED = "A paged KV cache stores keys and values in fixed-size blocks."
PROMPTS = ["The quick brown fox", "def", SHARED + " Continuous batching schedules requests at every iteration."]
LATER = SHARED + " Once upon a time"          # arrives after PROMPTS: its prefix is in the radix cache


@pytest.fixture
def kernels_everywhere():
    """Route RMSNorm / RoPE / SiLU*mul to Triton on CPU tensors as well (the interpreter runs them)."""
    ops.use_triton_on_cpu(not torch.cuda.is_available())
    yield
    ops.use_triton_on_cpu(False)


def _generate(path, backend, **kw):
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True, logprobs=2)
    with LLM(path, attention_backend=backend, block_size=4, num_kv_blocks=96, max_num_batched_tokens=16,
             **kw) as llm:
        first = llm.generate(PROMPTS, params)
        later = llm.generate(LATER, params)
        stats = llm.stats()
    return first + later, stats


def _assert_same_greedy(ref_outs, outs):
    """Same tokens, unless the torch run's own top two were within NEAR_TIE where they part."""
    for ref, out in zip(ref_outs, outs):
        a, b = ref.outputs[0], out.outputs[0]
        for t, (ta, tb) in enumerate(zip(a.token_ids, b.token_ids)):
            lp_ref = a.logprobs[t]
            if ta != tb:
                assert tb in lp_ref and lp_ref[ta].logprob - lp_ref[tb].logprob < NEAR_TIE, \
                    f"{ref.prompt!r} step {t}: triton chose {tb}, torch {ta}"
                break
            assert abs(b.logprobs[t][tb].logprob - lp_ref[ta].logprob) < 1e-4


@pytest.mark.parametrize("family", ["llama3", "qwen3"])
def test_triton_engine_matches_torch_engine(family, model_dir, kernels_everywhere):
    path = model_dir(family)
    ops.use_triton_on_cpu(False)
    ref, _ = _generate(path, "torch")
    ops.use_triton_on_cpu(not torch.cuda.is_available())
    outs, stats = _generate(path, "triton")
    assert len(outs[2].prompt_token_ids) > 16, "the long prompt must need a chunked prefill"
    assert stats.prefix_hit_tokens >= 8, "the later prompt must hit the radix cache"
    _assert_same_greedy(ref, outs)


def test_buckets():
    assert batch_buckets(1) == [1]
    assert batch_buckets(20) == [1, 2, 4, 8, 16, 20]
    assert batch_buckets(64) == [1, 2, 4, 8, 16, 32, 48, 64]
    assert batch_buckets(1000)[-1] == 256


def test_decode_graph_padding_matches_eager_and_writes_only_scratch(model_dir):
    """Padded static-buffer decode steps (what the CUDA graphs replay, run eagerly here): a 5-sequence
    step after a 7-sequence one (both bucket 8) must not write the 2 stale rows' slots, and its
    hidden states and KV writes must equal the plain eager step's."""
    page, nblocks = 4, 128
    with LLM(model_dir("llama3"), attention_backend="triton", block_size=page, num_kv_blocks=nblocks) as llm:
        runner = llm.engine.runner
        scratch = nblocks - 1                    # unused by this test's sequences: plays the scratch block

        def steps():
            gen = torch.Generator().manual_seed(0)
            with torch.inference_mode():
                runner.kv_cache.copy_(torch.randn(runner.kv_cache.shape, generator=gen))
                graphs = DecodeGraphs(runner.model, runner._context, runner.cos, runner.sin, block_size=page,
                                      max_model_len=64, max_batch_size=8, scratch_block=scratch,
                                      device=runner.device)
                order = torch.randperm(scratch, generator=gen).tolist()

                def batch(n):
                    lens = torch.randint(1, 33, (n,), generator=gen).tolist()
                    tables = [[order.pop() for _ in range(-(-m // page))] for m in lens]
                    ids = torch.randint(0, 100, (n,), generator=gen).tolist()
                    return ids, np.array([m - 1 for m in lens]), [1] * n, lens, tables

                graphs.run(*batch(7))
                ids, pos, qlens, lens, tables = batch(5)
                before = runner.kv_cache.clone()
                hidden = graphs.run(ids, pos, qlens, lens, tables).clone()
                after_graph = runner.kv_cache.clone()
                runner.kv_cache.copy_(before)
                meta = runner.build_metadata(qlens, lens, tables, pos)
                eager = runner._forward(ids, pos, meta, runner.kv_cache)
                return hidden, eager, before, after_graph, runner.kv_cache.clone(), meta.slot_mapping

        hidden, eager, before, after_graph, after_eager, slots = llm.engine.call(steps, timeout=600)
    torch.testing.assert_close(hidden, eager, rtol=1e-5, atol=1e-5)
    flat = lambda c: c.view(c.shape[0], 2, -1, c.shape[-2], c.shape[-1])       # [L, 2, slots, H, D]
    changed = (flat(after_graph) != flat(before)).any(dim=(0, 1, 3, 4)).nonzero().flatten()
    allowed = set(slots.tolist()) | set(range(scratch * page, (scratch + 1) * page))
    assert set(changed.tolist()) <= allowed, "a pad row wrote outside the scratch block"
    assert set(slots.tolist()) <= set(changed.tolist())
    keep = torch.ones(flat(before).shape[2], dtype=torch.bool)
    keep[scratch * page:(scratch + 1) * page] = False
    # a bucket-8 matmul may block its sums differently from a 5-row one: equal up to fp32 rounding
    torch.testing.assert_close(flat(after_graph)[:, :, keep], flat(after_eager)[:, :, keep], rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cuda_graphs_match_eager_on_gpu(dtype, model_dir):
    """Graph replays (decode batches of 1..9, padded into buckets) give the eager run's tokens."""
    path = model_dir("llama3")
    prompts = [f"{PROMPTS[i % 3]} {i}" for i in range(9)]
    params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True)
    results = {}
    for eager in (True, False):
        with LLM(path, dtype=dtype, attention_backend="triton", enforce_eager=eager, max_num_seqs=16,
                 num_kv_blocks=256) as llm:
            assert (llm.engine.runner.graphs is None) == eager
            results[eager] = [o.outputs[0].token_ids for o in llm.generate(prompts, params)]
    if dtype == "float32":
        assert results[True] == results[False]
    else:   # bf16: allow a late divergence at a near-tie, but the first tokens must agree
        assert all(a[:4] == b[:4] for a, b in zip(results[True], results[False]))


def test_triton_backend_on_cpu_without_interpreter_is_one_clear_error(monkeypatch, llama_dir):
    if torch.cuda.is_available():
        pytest.skip("the check is about CPU-only machines")
    from nbinfer.engine.attention import triton_backend as attention_backend
    monkeypatch.setattr(attention_backend, "interpreted", lambda kernel: False)    # as in a fresh process
    with pytest.raises(ValueError, match="attention_backend='triton' needs a CUDA device"):
        LLM(llama_dir, attention_backend="triton", num_kv_blocks=16)


def test_gpu_check_script_runs(tmp_path):
    """scripts/gpu_check.py is meant for a lent GPU; its --cpu-smoke mode runs every section on tiny
    shapes under the interpreter so the script cannot rot unnoticed (its timings mean nothing here)."""
    import json
    import subprocess
    import sys
    from pathlib import Path
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine run the script itself")
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--cpu-smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "gpu_check.json").read_text())
    assert results["correctness"] and all(c["ok"] for c in results["correctness"])
    assert "ctx20" in results["model"] and results["timings"]
