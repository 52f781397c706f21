"""The whole-model CPU step (kernels/cpu_llama.py) gives the torch model's tokens and log-probs.

Each family's tiny model runs the same requests twice in one engine, with the C++ step and with it
turned off (the torch forward, which tests/test_models.py holds to HF's greedy output): the tokens
must be the same and the log-probs, prompt log-probs included, equal to rounding. The steps: decode
batches of 1 to 10 sequences, prefill chunks after a cached prefix, mixed steps and a long prompt's
80-token chunks, with contexts over many blocks."""
import pytest
import torch

from nbinfer import LLM, SamplingParams
from nbinfer.kernels import cpu_llama

PROMPTS = ["The quick brown fox", "A paged", "Once upon a time there was a little model that",
           "def generate(prompt):", "请解释", "Emoji 🚀", "Notebooks keep one engine", "café", "x", "Continuous"]


class _Counted:
    """The step, counting the tokens of each call."""

    def __init__(self, step, calls):
        self.step, self.calls = step, calls

    def __call__(self, ids, positions, query_lens, tables, rows):
        self.calls.append((len(ids), max(query_lens)))
        return self.step(ids, positions, query_lens, tables, rows)


def _run(llm, use_step: bool):
    step, calls = llm.engine.runner.cpu_step, []
    llm.engine.runner.cpu_step = _Counted(step, calls) if use_step else None
    try:
        llm.reset_prefix_cache()
        params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=3)
        outs = llm.generate(PROMPTS[:1], params) + llm.generate(PROMPTS[:3], params)
        outs += llm.generate(PROMPTS[:5], params) + llm.generate(PROMPTS[:6], params)
        outs += llm.generate(" ".join(PROMPTS) * 2, params)    # prefill chunks of the whole 80-token budget
        outs += llm.generate(PROMPTS, params)                 # 10 sequences, a first step of 80 tokens
        # a prompt extending a cached one, with prompt log-probs: a prefill chunk after a cached prefix
        outs += llm.generate(PROMPTS[2] + " wanted to write stories", SamplingParams(
            temperature=0, max_tokens=4, ignore_eos=True, logprobs=1, prompt_logprobs=2))
    finally:
        llm.engine.runner.cpu_step = step
    got = []
    for o in outs:
        prompt_lps = [sorted((t, round(lp.logprob, 4)) for t, lp in d.items()) for d in o.prompt_logprobs or [] if d]
        for c in o.outputs:
            got.append((c.token_ids, [lp[t].logprob for lp, t in zip(c.logprobs, c.token_ids)], prompt_lps))
    return got, calls


# the last case: no dimension a multiple of the weight panels' 16 (or 32) rows, so the packed
# matrices are padded (cpu_llama.panels); the steps' sizes (1, 3, 5, 6, 10 and the chunks) give the
# packed token groups (matmul.h, groups of 6) every size
@pytest.mark.parametrize("family,dims", [("llama", {}), ("llama3", {}), ("mistral", {}), ("qwen2", {}), ("qwen3", {}),
                                         ("qwen3", {"hidden_size": 72, "intermediate_size": 100, "vocab_size": 403})])
def test_cpu_step_matches_the_torch_forward(model_dir, family, dims):
    with LLM(model_dir(family, **dims), block_size=4, num_kv_blocks=256, max_num_batched_tokens=80) as llm:
        if llm.engine.runner.cpu_step is None:
            pytest.skip("the CPU kernels could not be built here (no C++ compiler?)")
        ours, calls = _run(llm, use_step=True)
        ref, none = _run(llm, use_step=False)
    assert calls and not none and max(n for n, _ in calls) > 64  # a prefill-sized step too
    assert {1} < {n for n, _ in calls}                          # one decode token, and batches of them
    assert any(q > 1 for _, q in calls)                         # prefill chunks went through it too
    for (tokens, lps, prompt_lps), (ref_tokens, ref_lps, ref_prompt_lps) in zip(ours, ref):
        assert tokens == ref_tokens
        assert max(abs(a - b) for a, b in zip(lps, ref_lps)) < 1e-4
        assert [[t for t, _ in row] for row in prompt_lps] == [[t for t, _ in row] for row in ref_prompt_lps]
        assert all(abs(a - b) < 2e-4 for row, ref_row in zip(prompt_lps, ref_prompt_lps)
                   for (_, a), (_, b) in zip(row, ref_row))


@pytest.mark.parametrize("family,dims", [("llama", {}), ("qwen2", {}),
                                         ("qwen3", {"hidden_size": 72, "intermediate_size": 100, "vocab_size": 403})])
def test_int8_step_matches_the_torch_forward_on_the_dequantized_weights(model_dir, family, dims):
    """int8 matrices (quantization="int8"): the C++ step streams the int8 values and scales them per
    row; torch runs the same numbers dequantized, so the two agree to fp32 rounding."""
    with LLM(model_dir(family, **dims), block_size=4, num_kv_blocks=256, max_num_batched_tokens=80,
             quantization="int8") as llm:
        if llm.engine.runner.cpu_step is None:
            pytest.skip("the CPU kernels could not be built here (no C++ compiler?)")
        assert llm.engine.runner.cpu_step.quantized
        ours, calls = _run(llm, use_step=True)
        ref, _ = _run(llm, use_step=False)
    assert calls
    for (tokens, lps, _), (ref_tokens, ref_lps, _) in zip(ours, ref):
        assert tokens == ref_tokens
        assert max(abs(a - b) for a, b in zip(lps, ref_lps)) < 1e-4


def _greedy(llm, use_step: bool):
    step = llm.engine.runner.cpu_step
    llm.engine.runner.cpu_step = step if use_step else None
    try:
        llm.reset_prefix_cache()
        outs = llm.generate(PROMPTS[:3], SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=1))
    finally:
        llm.engine.runner.cpu_step = step
    return [(c.token_ids, [lp[t].logprob for lp, t in zip(c.logprobs, c.token_ids)]) for o in outs for c in o.outputs]


def test_bf16_step_keeps_fp32_sums(model_dir):
    """bf16 weights and cache, fp32 activations and sums: on weights that are bf16 values, the step
    differs from the fp32 forward only by the cache's rounding, several times less than torch's bf16
    forward (which rounds every activation) does."""
    path = model_dir("qwen3", bf16_exact=True)
    with LLM(path, dtype="float32", block_size=4, num_kv_blocks=256) as llm:
        ref = _greedy(llm, use_step=False)
    with LLM(path, dtype="bfloat16", block_size=4, num_kv_blocks=256) as llm:
        if llm.engine.runner.cpu_step is None:
            pytest.skip("the CPU kernels could not be built here (no C++ compiler?)")
        assert llm.engine.runner.kv_cache.dtype == torch.bfloat16
        ours, torch_bf16 = _greedy(llm, use_step=True), _greedy(llm, use_step=False)

    def worst(got):
        assert [t for t, _ in got] == [t for t, _ in ref]
        return max(abs(a - b) for (_, lps), (_, ref_lps) in zip(got, ref) for a, b in zip(lps, ref_lps))
    assert worst(ours) < 0.03 and worst(ours) < worst(torch_bf16) / 2


def test_panels_hold_the_rows_in_the_step_layout():
    w = torch.arange(5 * 3, dtype=torch.float32).view(5, 3)
    p = cpu_llama.panels(w, 4)
    assert p.shape == (2, 3, 4)
    assert torch.equal(p[1, :, 0], w[4]) and torch.equal(p[0, 2], w[:4, 2]) and not p[1, :, 1:].any()


def test_the_step_is_only_built_where_it_applies(model_dir):
    with LLM(model_dir("llama"), num_kv_blocks=64, attention_backend="torch") as llm:
        assert llm.engine.runner.cpu_step is None             # another cache layout
    with LLM(model_dir("llama"), num_kv_blocks=64, dtype="float16") as llm:
        assert llm.engine.runner.cpu_step is None             # fp32 and bf16 only
    with LLM(model_dir("llama"), num_kv_blocks=64) as llm:
        step = llm.engine.runner.cpu_step
        if step is None:
            pytest.skip("the CPU kernels could not be built here (no C++ compiler?)")
        assert isinstance(step, cpu_llama.LlamaStep)


def test_a_tokens_numbers_do_not_depend_on_the_batch(model_dir):
    """Alone or with 6 others in each step, a prompt's greedy tokens and log-probs are the same
    numbers (every packed group size sums in one order: cpu/matmul.h)."""
    with LLM(model_dir("llama"), num_kv_blocks=256, enable_prefix_caching=False) as llm:
        if llm.engine.runner.cpu_step is None:
            pytest.skip("the CPU kernels could not be built here (no C++ compiler?)")
        params = SamplingParams(temperature=0, max_tokens=16, ignore_eos=True, logprobs=1)
        alone = llm.generate(PROMPTS[2], params)[0].outputs[0]
        batched = llm.generate([PROMPTS[2]] + PROMPTS[3:9], params)[0].outputs[0]
    assert alone.token_ids == batched.token_ids
    assert [lp[t].logprob for lp, t in zip(alone.logprobs, alone.token_ids)] == \
        [lp[t].logprob for lp, t in zip(batched.logprobs, batched.token_ids)]
