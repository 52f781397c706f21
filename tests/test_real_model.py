"""The real-model tier: SmolLM2-135M-Instruct, loaded from its GGUF file and from the safetensors folder
that transformers' save_pretrained writes from the dequantized model (both loading paths must agree),
against transformers' own GGUF-loaded model (fp32, CPU): greedy tokens and logprobs on varied prompts
in one batch with chunked prefill and prefix-cache hits, prompt logprobs, a chat answer, SGL select on
factual questions, and a %%sgl program with fork/join and a regex-constrained JSON field."""
import json
from pathlib import Path

import pytest
import torch

import nbinfer as sgl
from hf_reference import NEAR_TIE, HFReference, assert_greedy_equal
from nbinfer import LLM, SamplingParams
from real_model import real_gguf
from test_sgl_select import reference as select_reference

MAX_TOKENS = 64
DOC_TOKENS = 1500
# SmolLM2's chat template adds its own system prompt when a conversation has none
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a haiku about the sea."}],
    [{"role": "system", "content": "You are a concise assistant."},
     {"role": "user", "content": "List three primary colors."}],
    [{"role": "user", "content": "用一句话介绍长城。"}],
]
# checked by hand first with transformers' normalized log-probs (the model picks the first choice,
# by >= 0.77 nats); questions it gets wrong (the Red Planet, a spider's legs, ...) are left out
QUESTIONS = [
    ("What is the capital of France?", ["Paris", "London", "Berlin", "Rome"]),
    ("What color is the sky on a clear day?", ["blue", "green", "red", "yellow"]),
    ("Which gas do plants absorb from the air for photosynthesis?", ["carbon dioxide", "oxygen", "helium", "nitrogen"]),
    ("Who wrote Romeo and Juliet?", ["William Shakespeare", "Charles Dickens", "Jane Austen", "Mark Twain"]),
    ("What is the chemical symbol for gold?", ["Au", "Ag", "Fe", "Gd"]),
    ("What is the boiling point of water at sea level in degrees Celsius?", ["100", "0", "50", "212"]),
]


@pytest.fixture(scope="module")
def gguf():
    return real_gguf()


@pytest.fixture(scope="module")
def hf(gguf):
    return HFReference(gguf.parent, gguf_file=gguf.name, use_cache=True)


@pytest.fixture(scope="module")
def safetensors_dir(hf, tmp_path_factory):
    path = tmp_path_factory.mktemp("smollm2-safetensors")
    quantizer = getattr(hf.model, "hf_quantizer", None)
    if quantizer is not None:      # transformers marks a GGUF-loaded model as quantized, though the weights
        quantizer.remove_quantization_config(hf.model)     # are plain fp32 now, and refuses to save it
    hf.model.save_pretrained(path)
    hf.tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module", params=["gguf", "safetensors"])
def llm(request, gguf):
    source = gguf if request.param == "gguf" else request.getfixturevalue("safetensors_dir")
    # a small step budget: the 1,500-token document is prefilled in chunks
    with LLM(str(source), num_kv_blocks=512, max_num_batched_tokens=256, max_model_len=2048) as engine:
        yield engine


@pytest.fixture(scope="module")
def document(hf) -> str:
    """1,500 tokens of English technical prose: the start of this repository's README."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    ids = hf.tokenizer.encode(readme)
    assert len(ids) > DOC_TOKENS
    return hf.tokenizer.decode(ids[:DOC_TOKENS])


def prompts(llm, document):
    plain = ["The history of the printing press begins", "请解释量子计算的基本原理。",
             'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
             document + "\n\nIn one sentence, the document above describes"]
    return plain + [llm.apply_chat_template(c) for c in CHATS]


def compare(hf, outs, label):
    """assert_greedy_equal on every output; returns (tokens compared, divergences, max |logprob diff|)."""
    compared = diverged = 0
    worst = 0.0
    for o in outs:
        c = o.outputs[0]
        assert len(c.token_ids) == MAX_TOKENS and c.finish_reason == "length"
        agreed = assert_greedy_equal(hf, o.prompt_token_ids, c.token_ids, c.logprobs, f"{label}:{o.prompt[:40]!r}")
        compared += agreed
        diverged += agreed < MAX_TOKENS
        _, rows = hf.greedy(list(o.prompt_token_ids), MAX_TOKENS)
        for t in range(agreed):
            tok = c.token_ids[t]
            worst = max(worst, abs(c.logprobs[t][tok].logprob - float(rows[t][tok])))
    return compared, diverged, worst


def test_greedy_equals_transformers_batched_chunked_and_from_the_prefix_cache(llm, hf, document, request):
    params = SamplingParams(temperature=0, max_tokens=MAX_TOKENS, ignore_eos=True, logprobs=0)
    first = prompts(llm, document)
    assert len(first) >= 8 and len(hf.tokenizer.encode(document)) >= DOC_TOKENS - 5
    outs = llm.generate(first, params)                     # one batch
    hits_before = llm.stats().prefix_hit_tokens
    # a second round that shares the document and the system prompt with the first: served from cache
    again = [document + "\n\nThe main parts of the engine described above are",
             llm.apply_chat_template([CHATS[2][0], {"role": "user", "content": "Name a warm color."}])]
    outs += llm.generate(again, params)
    assert llm.stats().prefix_hit_tokens - hits_before >= 1400
    compared, diverged, worst = compare(hf, outs, request.node.callspec.id)
    print(f"\n[{request.node.callspec.id}] {len(outs)} prompts x {MAX_TOKENS} tokens: {compared} tokens "
          f"equal to transformers', {diverged} near-tie divergences, max |logprob diff| {worst:.2e}")
    assert compared >= 0.9 * MAX_TOKENS * len(outs) and worst < NEAR_TIE


def test_prompt_logprobs_equal_transformers(llm, hf, document):
    texts = [document + "\n\nSummary:", llm.apply_chat_template(CHATS[0])]
    outs = llm.generate(texts, SamplingParams(max_tokens=1, prompt_logprobs=1))
    worst = 0.0
    for o in outs:
        ids = o.prompt_token_ids
        rows = hf.logprobs(ids)
        assert o.prompt_logprobs[0] is None
        for p in range(1, len(ids)):
            worst = max(worst, abs(o.prompt_logprobs[p][ids[p]].logprob - float(rows[p - 1, ids[p]])))
    assert worst < NEAR_TIE, worst


def test_chat_answers_the_capital_of_france(llm):
    out = llm.chat(CHATS[0], SamplingParams(temperature=0, max_tokens=32))[0].outputs[0]
    assert "Paris" in out.text and out.finish_reason == "stop", out.text


def test_select_answers_factual_questions_as_transformers_scores_them(llm, hf):
    @sgl.function
    def answer(s, prefix, choices):
        s += prefix
        s += sgl.select("answer", choices=choices)

    for question, choices in QUESTIONS:
        prefix = llm.apply_chat_template([{"role": "user", "content": question}])["prompt"]
        state = answer.run(prefix=prefix, choices=choices, backend=llm)
        assert state["answer"] == choices[0], question
        expected = [select_reference(hf, prefix, c)[0] for c in choices]
        assert state.get_meta_info("answer")["normalized_prompt_logprobs"] == pytest.approx(expected, abs=NEAR_TIE)


SGL_CELL = '''
s += system("You are a helpful assistant.")
s += user("Tell me about two cities.")
forks = s.fork(2)
for f, city in zip(forks, ["Paris", "Rome"]):
    f += assistant(f"{city} is the capital of" + gen("country", max_tokens=8, stop="."))
forks.join()
s += user("Describe Paris as JSON with the keys city and country.")
s += assistant(gen("info", regex=r'\\{"city": "[A-Z][a-z]{1,15}", "country": "[A-Z][a-z]{1,15}"\\}', max_tokens=32))
'''


def test_sgl_cell_with_fork_join_and_a_regex_constrained_json_field(llm):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    from nbinfer.jupyter import session, sgl_magic
    ip = InteractiveShell.instance()
    sgl_magic.register(ip)
    session.unload_llm()
    sgl.set_default_backend(llm)        # the cell runs on this engine (no notebook engine is loaded)
    try:
        ip.run_cell_magic("sgl", "--out trip --temperature 0", SGL_CELL)
    finally:
        sgl.set_default_backend(None)
    state = ip.user_ns.pop("trip")
    countries = state["country"]
    assert len(countries) == 2 and "France" in countries[0] and "Italy" in countries[1], countries
    info = json.loads(state["info"])
    assert info["city"] == "Paris" and info["country"] == "France", info


def test_int8_weights_still_answer_and_stay_close_to_fp32(gguf, hf):
    """quantization="int8" on the real model: its greedy continuation of a chat follows fp32's for
    most tokens (teacher-forced: the fp32 model's top token is int8's at nearly every position) and
    it still answers the question."""
    with LLM(str(gguf), num_kv_blocks=256, quantization="int8") as llm:
        assert llm.engine.runner.cpu_step is None or llm.engine.runner.cpu_step.quantized
        out = llm.chat(CHATS[0], SamplingParams(temperature=0, max_tokens=32))[0]
        assert "Paris" in out.outputs[0].text, out.outputs[0].text
        ids = list(out.prompt_token_ids) + list(out.outputs[0].token_ids)
        scored = llm.generate({"prompt_token_ids": ids}, SamplingParams(max_tokens=1, prompt_logprobs=1))[0]
    with torch.no_grad():
        ref = hf.model(torch.tensor([ids])).logits[0].argmax(-1).tolist()     # ref[p]: fp32's pick after ids[:p+1]
    ours = [next(t for t, lp in d.items() if lp.rank == 1) for d in scored.prompt_logprobs[1:]]
    same = sum(a == b for a, b in zip(ours, ref[:-1]))
    assert same >= 0.9 * len(ours), (same, len(ours))
