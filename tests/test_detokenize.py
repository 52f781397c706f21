"""Incremental detokenization: multi-byte UTF-8 never streams as U+FFFD."""
import torch

from nbinfer import SamplingParams
from nbinfer.models.tokenizer import IncrementalDetokenizer

TEXTS = ["请解释量子计算的基本原理。量子比特可以处于叠加态。", "日本語のテキスト 🚀✨🤖 café naïve", "plain ascii text"]


def test_pushing_tokens_one_by_one_reassembles_the_text(shared_llm):
    tok = shared_llm.tokenizer
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False)
        pieces = [tok.decode([i]) for i in ids]
        if text[0] != "p":
            assert any("\ufffd" in p for p in pieces)   # the tokenizer really does split characters
        prompt = tok.encode("Prompt: ")
        detok = IncrementalDetokenizer(tok, prompt)
        deltas = [detok.push(i) for i in ids] + [detok.flush()]
        assert all("\ufffd" not in d for d in deltas)
        assert "".join(deltas) == text


class ForceTokens:
    """A `constraint` that allows exactly one token per step: the next one of a fixed sequence."""

    def __init__(self, ids):
        self.ids = ids

    def new_state(self):
        return _ForceState(self.ids)


class _ForceState:
    def __init__(self, ids):
        self.ids, self.pos = ids, 0

    def allowed_mask(self, vocab_size):
        mask = torch.zeros(vocab_size, dtype=torch.bool)
        mask[self.ids[self.pos]] = True
        return mask

    def accept(self, token):
        assert token == self.ids[self.pos]
        self.pos += 1

    def is_finished(self):
        return self.pos == len(self.ids)


def test_engine_streams_chinese_without_replacement_chars(shared_llm):
    text = TEXTS[0] + TEXTS[1]
    ids = shared_llm.tokenizer.encode(text, add_special_tokens=False)
    h = shared_llm.submit("请解释", SamplingParams(temperature=1.0, max_tokens=200, constraint=ForceTokens(ids)))
    deltas = list(h)
    out = h.result().outputs[0]
    assert out.token_ids == ids and out.finish_reason == "stop"
    assert all("\ufffd" not in d for d in deltas)
    assert "".join(deltas) == out.text == text
