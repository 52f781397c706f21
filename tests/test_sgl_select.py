"""select(): SGLang's token-length-normalized log-prob of each choice after the prefix, checked
against an independent computation -- HF transformers' forward pass, and the choice's tokens found
from the tokenizer's character offsets rather than from token ids."""
import pytest
import torch

import nbinfer as sgl

CHOICES = ["lazy dog", "cat", "quantum computer", " sleepy fox"]


def reference(hf, prefix: str, choice: str) -> tuple[float, list[float]]:
    enc = hf.tokenizer(prefix + choice, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    # the choice's tokens: every token that ends past the prefix (one that straddles the boundary,
    # e.g. " " + "cat" merged into " cat", belongs to the choice)
    first = next(i for i, (_, end) in enumerate(offsets) if end > len(prefix))
    first = max(first, 1)
    with torch.no_grad():
        rows = hf.logprobs(ids)
    lps = [float(rows[p - 1, ids[p]]) for p in range(first, len(ids))]
    return sum(lps) / len(lps), lps


@pytest.mark.parametrize("prefix", [
    "The quick brown fox jumps over the ",       # ends in a space: it merges into the choice's first token
    "The quick brown fox jumps over the",
    "请解释量子计算的基本原理。",
])
def test_select_equals_the_normalized_logprob_computed_with_hf(shared_llm, hf_ref, prefix):
    hf = hf_ref("llama")

    @sgl.function
    def pick(s, prefix):
        s += prefix
        s += sgl.select("choice", choices=CHOICES)

    st = pick.run(prefix=prefix, backend=shared_llm)
    meta = st.get_meta_info("choice")
    expected = [reference(hf, prefix, c) for c in CHOICES]
    got = meta["normalized_prompt_logprobs"]
    assert got == pytest.approx([e[0] for e in expected], abs=1e-4)
    for row, (_, lps) in zip(meta["input_token_logprobs"], expected):
        assert [t[0] for t in row] == pytest.approx(lps, abs=1e-4)
    best = max(range(len(CHOICES)), key=lambda i: expected[i][0])
    assert st["choice"] == CHOICES[best]
    assert st.text == prefix + CHOICES[best]
    assert st.stats.num_requests == len(CHOICES)


def test_select_reuses_the_cached_prefix(shared_llm):
    """logprob_start_len lets the choices' requests take the prefix from the radix cache."""
    @sgl.function
    def gen_then_pick(s):
        s += "A paged KV cache stores keys and values in fixed-size blocks. Continuous batching schedules "
        s += sgl.gen("more", max_tokens=8, temperature=0)
        s += " So the answer is "
        s += sgl.select("yn", choices=["yes", "no"])

    st = gen_then_pick.run(backend=shared_llm)
    assert st.stats.num_requests == 3
    assert st.stats.cached_tokens >= 2 * 16      # both choices found the gen's prefix blocks


def test_gen_with_choices_is_a_select(shared_llm, hf_ref):
    @sgl.function
    def tool(s):
        s += "To answer this question I need a " + sgl.gen("tool", choices=["calculator", "web browser"]) + "."

    st = tool.run(backend=shared_llm)
    prefix = "To answer this question I need a "
    scores = [reference(hf_ref("llama"), prefix, c)[0] for c in ["calculator", "web browser"]]
    assert st["tool"] == ["calculator", "web browser"][scores.index(max(scores))]
    assert st.text == prefix + st["tool"] + "."


def test_other_choice_methods(shared_llm, hf_ref):
    hf = hf_ref("llama")
    prefix = "The quick brown fox jumps over the"
    choices = [" lazy dog", " cat"]

    @sgl.function
    def pick(s, method):
        s += prefix
        s += sgl.select("c", choices=choices, choices_method=method)

    st = pick.run(method=sgl.unconditional_likelihood_normalized, backend=shared_llm)
    meta = st.get_meta_info("c")
    expected = []
    for c in choices:
        _, cond = reference(hf, prefix, c)
        ids = [t[1] for t in meta["input_token_logprobs"][choices.index(c)]]
        rows = hf.logprobs(ids)
        uncond = [0.0] + [float(rows[p - 1, ids[p]]) for p in range(1, len(ids))]
        expected.append(sum(a - b for a, b in zip(cond, uncond)) / len(cond))
    assert meta["normalized_unconditional_prompt_logprobs"] == pytest.approx(expected, abs=1e-4)
    assert st["c"] == choices[expected.index(max(expected))]

    st = pick.run(method=sgl.greedy_token_selection, backend=shared_llm)
    first = [reference(hf, prefix, c)[1][0] for c in choices]
    assert st["c"] == choices[first.index(max(first))]
