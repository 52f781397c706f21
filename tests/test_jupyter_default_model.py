"""The bundled default model: small enough to ship, loads in our engine and in HF transformers with
equal greedy output, writes readable English (words of its training grammar), follows its chat
template; and `nbinfer demo` prints it."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_reference import HFReference, assert_greedy_equal
from nbinfer import LLM, SamplingParams, default_model_path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import story_grammar  # noqa: E402


def grammar_words() -> set[str]:
    import random
    rng = random.Random(99)
    words = set()
    for _ in range(3000):
        text = story_grammar.story(rng) + " " + " ".join(m["content"] for m in story_grammar.chat_example(rng))
        words |= set(re.findall(r"[A-Za-z]+", text.lower()))
    return words


@pytest.fixture(scope="module")
def llm():
    with LLM(num_kv_blocks=256) as engine:
        yield engine


def test_files_are_small_and_complete():
    path = default_model_path()
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 8 * 2**20, f"{size / 2**20:.1f} MiB"
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    gen = json.loads((path / "generation_config.json").read_text())
    assert isinstance(gen["eos_token_id"], list) and len(gen["eos_token_id"]) == 2
    readme = (path / "README.md").read_text()
    assert "Apache-2.0" in readme and "scripts/train_default_model.py" in readme
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (path / name).exists()


def test_writes_readable_english(llm):
    vocab = grammar_words()
    outs = llm.generate(["Once upon a time, there was", "One sunny day, there was a little dog named Max.",
                         "Long ago, there was a kind owl named Ben."],
                        SamplingParams(temperature=0.8, top_p=0.95, max_tokens=150, seed=0))
    for o in outs:
        text = o.outputs[0].text
        words = re.findall(r"[A-Za-z]+", text.lower())
        assert len(words) >= 30, text
        known = sum(w in vocab for w in words) / len(words)
        assert known >= 0.95, f"{known:.0%} known words: {text!r}"
        assert text.count(".") >= 3, text            # sentences, not a word salad
        # it keeps track of who the story is about: a story has two characters, not a name per sentence
        names = set(re.findall(r"\b(?:%s)\b" % "|".join(story_grammar.GIRLS + story_grammar.BOYS), o.prompt + text))
        assert len(names) <= 2, (names, text)


def test_chat_template_and_stop_tokens(llm):
    tok = llm.tokenizer
    assert tok.chat_template and tok.bos_token == "<s>" and tok.eos_token == "</s>"
    assert tok.encode("Hi")[0] == tok.bos_token_id                # encode starts with <s>, as in training
    out = llm.chat([{"role": "user", "content": "Tell me a story about a cat named Tom."}],
                   SamplingParams(temperature=0, max_tokens=300))[0].outputs[0]
    assert out.finish_reason == "stop" and "Tom" in out.text and "<|im_end|>" not in out.text


def test_greedy_equals_hf_transformers(llm):
    ref = HFReference(default_model_path())
    prompts = ["Once upon a time, there was", "Lily and Sam were playing in the park."]
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=32, ignore_eos=True, logprobs=0))
    for o in outs:
        c = o.outputs[0]
        assert assert_greedy_equal(ref, o.prompt_token_ids, c.token_ids, c.logprobs, o.prompt) >= 16


def test_demo_command_prints_stories():
    done = subprocess.run([sys.executable, "-m", "nbinfer", "demo", "--max-tokens", "60"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "[1] Once upon a time" in out and "[4] user: Tell me a story" in out
    assert re.search(r"4 prompts in one batch .* tok/s", out), out
    stories = "\n".join(out.strip().splitlines()[1:-1])        # without the header and stats lines
    words = re.findall(r"[A-Za-z]+", stories.lower())
    assert sum(w in grammar_words() for w in words) / len(words) > 0.9


def test_demo_errors_are_one_line():
    done = subprocess.run([sys.executable, "-m", "nbinfer", "demo", "--model", "/no/such/model"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip() == "nbinfer demo: model path '/no/such/model' does not exist"
    done = subprocess.run([sys.executable, "-m", "nbinfer", "demo", "--temperature", "-1"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "temperature" in done.stderr
