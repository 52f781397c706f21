"""Sampler and stopping: greedy/temperature/top-k/top-p/min-p, penalties, seeds, stops, logprobs."""
import math
from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from nbinfer import SamplingParams
from nbinfer.engine.sampler import Sampler

PROMPT = "Once upon a time there was a little model"


def fake_seqs(params, n=1, token_ids=None, output_ids=None):
    req = SimpleNamespace(params=params)
    return [SimpleNamespace(request=req, token_ids=token_ids or [], output_ids=output_ids or [],
                            generator=None, constraint=None) for _ in range(n)]


def sample_many(params, logits, n=4000, seed=0):
    sampler = Sampler(seed, torch.device("cpu"))
    rows = logits.expand(n, -1).clone()
    return Counter(sampler(rows, fake_seqs(params, n)).tokens)


LOGITS = torch.log(torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]]))


def test_temperature_one_samples_the_softmax():
    counts = sample_many(SamplingParams(temperature=1.0), LOGITS)
    probs = LOGITS.softmax(-1)[0]
    for tok, p in enumerate(probs.tolist()):
        assert abs(counts[tok] / 4000 - p) < 4 * math.sqrt(p * (1 - p) / 4000) + 1e-3


def test_temperature_sharpens():
    hot = sample_many(SamplingParams(temperature=2.0), LOGITS)
    cold = sample_many(SamplingParams(temperature=0.3), LOGITS)
    assert cold[0] > 3000 > hot[0]


def test_top_k_top_p_min_p_restrict_the_support():
    assert set(sample_many(SamplingParams(top_k=2), LOGITS)) == {0, 1}
    assert set(sample_many(SamplingParams(top_p=0.7), LOGITS)) == {0, 1}     # 0.5 + 0.25 reaches 0.7
    assert set(sample_many(SamplingParams(top_p=0.5), LOGITS)) == {0}
    assert set(sample_many(SamplingParams(min_p=0.25), LOGITS)) == {0, 1, 2}  # >= 0.125
    assert set(sample_many(SamplingParams(top_k=1), LOGITS)) == {0}


def test_mixed_batch_rows_keep_their_own_params():
    sampler = Sampler(0, torch.device("cpu"))
    params = [SamplingParams(temperature=0), SamplingParams(top_k=2), SamplingParams(temperature=1.0)]
    seqs = [fake_seqs(p)[0] for p in params] * 300
    out = sampler(LOGITS.expand(900, -1).clone(), seqs).tokens
    assert set(out[0::3]) == {0} and set(out[1::3]) == {0, 1} and len(set(out[2::3])) >= 4


def test_penalties_match_their_definitions():
    sampler = Sampler(0, torch.device("cpu"))
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0, -2.0]])
    p = SamplingParams(repetition_penalty=2.0, presence_penalty=0.5, frequency_penalty=0.25)
    seq = fake_seqs(p, token_ids=[0, 1, 3, 3], output_ids=[3, 3, 1])[0]
    got = sampler._apply_penalties(logits, [seq], [p])[0]
    want = torch.tensor([2.0 / 2, -1.0 * 2 - 0.25 - 0.5, 0.5, 3.0 / 2 - 0.5 - 0.5, -2.0])
    torch.testing.assert_close(got, want)
    assert logits[0, 0] == 2.0   # input untouched


def test_repetition_penalty_changes_greedy_output(shared_llm):
    plain = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True))[0]
    penal = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=30, ignore_eos=True,
                                                       repetition_penalty=5.0))[0]
    toks = penal.outputs[0].token_ids
    assert toks != plain.outputs[0].token_ids
    assert len(set(toks)) > len(set(plain.outputs[0].token_ids)) or len(set(toks)) == len(toks)


def test_seed_is_reproducible_and_independent_of_batch_company(shared_llm):
    p = SamplingParams(temperature=1.0, seed=1234, max_tokens=24, ignore_eos=True)
    alone = shared_llm.generate(PROMPT, p)[0].outputs[0].token_ids
    crowd = shared_llm.generate(["The quick brown fox", PROMPT, "A paged KV cache"],
                                [SamplingParams(temperature=1.0, max_tokens=30), p,
                                 SamplingParams(temperature=0.8, max_tokens=10)])
    assert crowd[1].outputs[0].token_ids == alone
    other = shared_llm.generate(PROMPT, SamplingParams(temperature=1.0, seed=99, max_tokens=24, ignore_eos=True))
    assert other[0].outputs[0].token_ids != alone


def test_top_k_one_equals_greedy(shared_llm):
    greedy = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    topk = shared_llm.generate(PROMPT, SamplingParams(temperature=1.3, top_k=1, max_tokens=20, ignore_eos=True))
    assert greedy[0].outputs[0].token_ids == topk[0].outputs[0].token_ids


def test_stop_string_is_cut_from_text_and_stream(shared_llm):
    base = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=40, ignore_eos=True))[0]
    text = base.outputs[0].text
    stop = text[12:15]
    cut = text.index(stop)
    h = shared_llm.submit(PROMPT, SamplingParams(temperature=0, max_tokens=40, ignore_eos=True,
                                                 stop=["never-appears", stop]))
    streamed = "".join(h)
    out = h.result().outputs[0]
    assert out.text == text[:cut] == streamed
    assert out.finish_reason == "stop" and out.stop_reason == stop
    kept = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, stop=stop,
                                                      include_stop_str_in_output=True))[0].outputs[0]
    assert kept.text == text[:cut + len(stop)]


def test_stop_token_ids_and_eos(shared_llm):
    base = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))[0]
    toks = base.outputs[0].token_ids
    stop_tok = toks[5]
    first = toks.index(stop_tok)
    out = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=20, stop_token_ids=[stop_tok]))[0]
    c = out.outputs[0]
    assert c.token_ids == toks[:first + 1] and c.finish_reason == "stop" and c.stop_reason == stop_tok

    processor = shared_llm.engine.outputs        # the output processor decides what ends a sequence
    saved = processor.eos_ids
    processor.eos_ids = {stop_tok}
    try:
        eos = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=20))[0].outputs[0]
        ignored = shared_llm.generate(PROMPT, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))[0]
    finally:
        processor.eos_ids = saved
    assert eos.token_ids == toks[:first + 1] and eos.finish_reason == "stop" and eos.stop_reason is None
    assert ignored.outputs[0].token_ids == toks


def test_logprobs_top_k_and_ranks(shared_llm):
    out = shared_llm.generate(PROMPT, SamplingParams(temperature=1.0, seed=5, max_tokens=10, logprobs=3,
                                                     ignore_eos=True))[0].outputs[0]
    assert len(out.logprobs) == 10
    total = 0.0
    for tok, entry in zip(out.token_ids, out.logprobs):
        assert tok in entry and 3 <= len(entry) <= 4
        top = sorted((lp for t, lp in entry.items() if lp.rank <= 3), key=lambda lp: lp.rank)
        assert [lp.rank for lp in top] == [1, 2, 3]
        assert top[0].logprob >= top[1].logprob >= top[2].logprob
        assert entry[tok].rank >= 1 and entry[tok].decoded_token is not None
        total += entry[tok].logprob
    assert out.cumulative_logprob == pytest.approx(total)


def test_max_tokens_none_runs_to_max_model_len(llama_dir):
    from nbinfer import LLM
    with LLM(llama_dir, num_kv_blocks=64, max_model_len=40) as llm:
        out = llm.generate("The quick", SamplingParams(max_tokens=None, ignore_eos=True))[0]
    assert len(out.prompt_token_ids) + len(out.outputs[0].token_ids) == 40
    assert out.outputs[0].finish_reason == "length"


@pytest.mark.parametrize("field, value", [
    ("temperature", -0.1), ("top_p", 0.0), ("top_p", 1.5), ("top_k", 0), ("top_k", -2), ("min_p", 1.5),
    ("max_tokens", 0), ("n", 0), ("logprobs", -1), ("prompt_logprobs", -1), ("repetition_penalty", 0.0),
    ("presence_penalty", 3.0), ("frequency_penalty", -2.5), ("stop", [""]), ("stop_token_ids", [-1]),
    ("seed", 1.5), ("temperature", "hot"), ("max_tokens", 2.5),
])
def test_invalid_sampling_params_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"SamplingParams.{field} "):
        SamplingParams(**{field: value})


def test_stop_token_outside_vocab_is_rejected_and_engine_keeps_serving(shared_llm):
    with pytest.raises(ValueError, match="stop_token_ids"):
        shared_llm.generate(PROMPT, SamplingParams(stop_token_ids=[10**6]))
    assert shared_llm.generate(PROMPT, SamplingParams(max_tokens=2))[0].outputs[0].token_ids
