"""The whole-model CPU decode step (kernels/cpu_llama.py) gives the torch model's tokens and log-probs.

Each family's tiny model runs the same requests twice in one engine, with the C++ step and with it
turned off (the torch forward, which tests/test_models.py holds to HF's greedy output): the tokens
must be the same and the log-probs equal to rounding. The requests make decode steps of 1 to
MAX_BATCH sequences (the step's regime) and wider ones (torch's), contexts over several blocks."""
import pytest

from nbinfer import LLM, SamplingParams
from nbinfer.kernels import cpu_llama

PROMPTS = ["The quick brown fox", "A paged", "Once upon a time there was a little model that",
           "def generate(prompt):", "请解释", "Emoji 🚀", "Notebooks keep one engine", "café", "x", "Continuous"]


def _run(llm, use_step: bool):
    step = llm.engine.runner.cpu_step
    calls = []
    if use_step:
        real = step.__call__
        llm.engine.runner.cpu_step = type("Counted", (), {"takes": step.takes,
                                                          "__call__": lambda s, *a: calls.append(len(a[0])) or real(*a)})()
    else:
        llm.engine.runner.cpu_step = None
    try:
        llm.reset_prefix_cache()
        params = SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=3)
        one = llm.generate(PROMPTS[:1], params)
        few = llm.generate(PROMPTS[:3], params)
        wide = llm.generate(PROMPTS, params)         # 10 sequences: wider than MAX_BATCH, then narrowing
    finally:
        llm.engine.runner.cpu_step = step
    outs = [(c.token_ids, [lp[t].logprob for lp, t in zip(c.logprobs, c.token_ids)])
            for o in one + few + wide for c in o.outputs]
    return outs, calls


@pytest.mark.parametrize("family", ["llama", "llama3", "mistral", "qwen2", "qwen3"])
def test_cpu_decode_step_matches_the_torch_forward(model_dir, family):
    with LLM(model_dir(family), block_size=4, num_kv_blocks=256, max_num_batched_tokens=64) as llm:
        if llm.engine.runner.cpu_step is None:
            pytest.skip("the CPU kernels could not be built here (no C++ compiler?)")
        ours, calls = _run(llm, use_step=True)
        ref, none = _run(llm, use_step=False)
    assert calls and max(calls) <= cpu_llama.MAX_BATCH and min(calls) == 1 and not none
    assert any(n > 1 for n in calls)                          # batched decode steps went through it too
    for (tokens, lps), (ref_tokens, ref_lps) in zip(ours, ref):
        assert tokens == ref_tokens
        assert max(abs(a - b) for a, b in zip(lps, ref_lps)) < 1e-4


def test_the_step_is_only_built_where_it_applies(model_dir):
    with LLM(model_dir("llama"), num_kv_blocks=64, attention_backend="torch") as llm:
        assert llm.engine.runner.cpu_step is None             # another cache layout
    with LLM(model_dir("llama"), num_kv_blocks=64, dtype="bfloat16") as llm:
        assert llm.engine.runner.cpu_step is None             # fp32 only
    with LLM(model_dir("llama"), num_kv_blocks=64) as llm:
        step = llm.engine.runner.cpu_step
        if step is None:
            pytest.skip("the CPU kernels could not be built here (no C++ compiler?)")
        assert step.takes([1, 1], 2, 0) and not step.takes([1, 2], 2, 0) and not step.takes([1], 0, 0)
        assert not step.takes([1] * (cpu_llama.MAX_BATCH + 1), cpu_llama.MAX_BATCH + 1, 0)
        assert not step.takes([1], 1, 3)                      # prompt log-probs want the torch forward's rows
