"""Constrained gen: regex / JSON schema / dtype become a token mask, so outputs always match --
at temperature 1, from a random tiny model that would otherwise write noise."""
import json
import re

import pytest
import torch

import nbinfer as sgl
from nbinfer.lang.constraints import ConstraintFactory

PHONE = r"\(\d{3}\) \d{3}-\d{4}"
PATTERNS = [PHONE, r"(yes|no|maybe)", r"[A-Z][a-z]{2,6}( [A-Z][a-z]{2,6})?", r"-?\d{1,3}\.\d{2}",
            r"(cat|dog)s? (run|sleep)s?", r"请解释(量子|计算)"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_regex_outputs_always_match_at_temperature_1(shared_llm, pattern):
    @sgl.function
    def fill(s, seed_text):
        s += seed_text + ": "
        s += sgl.gen("value", regex=pattern, max_tokens=64, temperature=1.0)

    seeds = ["Call", "Answer", "Name", "Price", "Animals", "问题", "x", "The quick brown fox"]
    states = fill.run_batch([{"seed_text": t} for t in seeds], backend=shared_llm, num_threads=8)
    for st in states:
        value = st["value"]
        assert re.fullmatch(pattern, value), f"{value!r} does not match {pattern!r}"
        assert st.get_meta_info("value")["finish_reason"]["type"] == "stop"
        assert st.text.endswith(": " + value)


def test_dtype_and_sglang_regex_constants(shared_llm):
    @sgl.function
    def typed(s):
        s += "n=" + sgl.gen("n", dtype=int, max_tokens=12) + "\n"
        s += "ok=" + sgl.gen("ok", dtype=bool) + "\n"
        s += "x=" + sgl.gen("x", dtype=float, max_tokens=12) + "\n"
        s += "q=" + sgl.gen("q", regex=r'"[\w\d\s]{0,8}"', max_tokens=24) + "\n"
        s += "i=" + sgl.gen_int("i", max_tokens=12)

    for st in typed.run_batch([{}] * 4, backend=shared_llm, temperature=1.0):
        int(st["n"]), float(st["x"]), int(st["i"])        # parse, as a user's code would
        assert re.fullmatch(r"[-+]?[0-9]+", st["n"]) and re.fullmatch(r"[-+]?[0-9]+", st["i"])
        assert st["ok"] in ("True", "False")
        assert re.fullmatch(r"[-+]?[0-9]*\.?[0-9]+", st["x"])
        assert re.fullmatch(sgl.REGEX_STR, st["q"])
        assert all(st.get_meta_info(v)["finish_reason"]["type"] == "stop" for v in ("ok", "q"))


def test_a_max_tokens_cut_is_reported_not_hidden(shared_llm):
    """The mask guarantees a match for an output that ends on its own; when max_tokens ends it
    first, the output is the start of a match, the finish reason says "length", and a warning names
    the gen."""
    @sgl.function
    def quoted(s):
        s += "q=" + sgl.gen("q", regex=sgl.REGEX_STR, max_tokens=1, temperature=1.0)

    with pytest.warns(UserWarning, match="gen\\('q'\\): max_tokens=1 ended the constrained output"):
        st = quoted.run(backend=shared_llm)
    assert st.get_meta_info("q")["finish_reason"]["type"] == "length"
    assert st["q"].startswith('"') and re.fullmatch(r'"[\w\d\s]*', st["q"])


def test_json_schema_outputs_parse_and_validate(shared_llm):
    schema = {"type": "object",
              # (a pattern, not maxLength: xgrammar 0.2's maxLength strings admit raw control characters)
              "properties": {"name": {"type": "string", "pattern": "^[a-z]{1,8}$"},
                             "age": {"type": "integer", "minimum": 0, "maximum": 120},
                             "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2}},
              "required": ["name", "age", "tags"], "additionalProperties": False}

    @sgl.function
    def person(s):
        s += "Person as JSON: "
        s += sgl.gen("json", json_schema=json.dumps(schema), max_tokens=120, temperature=1.0)

    for st in person.run_batch([{}] * 3, backend=shared_llm):
        obj = json.loads(st["json"])
        assert set(obj) == {"name", "age", "tags"}
        assert re.fullmatch("[a-z]{1,8}", obj["name"])
        assert isinstance(obj["age"], int) and 0 <= obj["age"] <= 120
        assert all(t in ("a", "b") for t in obj["tags"]) and len(obj["tags"]) <= 2


def test_grammar_state_masks_and_finishes(shared_llm):
    tok = shared_llm.tokenizer
    factory = ConstraintFactory(tok, len(tok), (tok.eos_token_id,))
    state = factory.regex("(yes|no)").new_state()
    mask = state.allowed_mask(len(tok))
    assert mask.dtype == torch.bool and mask.shape == (len(tok),)
    allowed = {tok.decode([i]) for i in mask.nonzero().flatten().tolist()}
    assert allowed and all("yes".startswith(a) or "no".startswith(a) for a in allowed)
    assert not state.is_finished()
    for t in tok.encode("yes", add_special_tokens=False):
        state.accept(t)
    assert state.is_finished()               # nothing but the end is allowed now
    wide = state.allowed_mask(len(tok) + 7)  # logits wider than the tokenizer's vocabulary
    assert wide.shape == (len(tok) + 7,) and not wide[len(tok):].any()
    assert factory.regex("(yes|no)") is factory.regex("(yes|no)")     # compiled once


def test_bad_regex_and_conflicting_constraints_are_clear(shared_llm):
    with pytest.raises(sgl.SglError, match="regex '\\(' is invalid"):
        sgl.gen("x", regex="(")

    @sgl.function
    def both(s):
        s += sgl.gen("x", regex="a", json_schema="{}")

    with pytest.raises(sgl.SglError, match="regex or json_schema, not both"):
        both.run(backend=shared_llm)


@pytest.mark.parametrize("pattern", [r"\s", r"[a\s]", r"[^\s]", r"x\s+y", r"[\w\d\s]*", r"\\s"])
def test_whitespace_means_what_pythons_re_means(pattern):
    """xgrammar's `\\s` (ECMAScript's) admits U+FEFF, which Python's re does not: a gen(regex=...)
    sampled at temperature 1 once produced '"M engwd\\ufeff"' for REGEX_STR. What the compiled mask
    admits must match with re."""
    import xgrammar as xgr
    from xgrammar.testing import _is_grammar_accept_string as admits
    from nbinfer.lang.constraints import python_whitespace
    grammar = xgr.Grammar.from_regex(python_whitespace(pattern))
    samples = ["\ufeff", " ", "\t", "\n", "\xa0", "\u2028", "\u3000", "a", "x  y", "x\ufeffy", "\\s", "a \ufeff"]
    for text in samples:
        if admits(grammar, text):
            assert re.fullmatch(pattern, text), f"{pattern!r} admits {text!r}, which re does not match"
    assert admits(grammar, {r"\s": " ", r"[a\s]": "\t", r"[^\s]": "\ufeff", r"x\s+y": "x \u3000y",
                            r"[\w\d\s]*": "ab 1\n", r"\\s": "\\s"}[pattern])
