"""SGL programs on the real engine (tiny models): greedy programs equal LLM.generate on the same
prompts, roles follow the chat template, forks and run_batch batch together, the prefix cache serves
a program's shared text, requests carry the program id, cancellation frees every block."""
import time

import pytest

import nbinfer as sgl
from nbinfer import LLM, SamplingParams

PREAMBLE = ("A paged KV cache stores keys and values in fixed-size blocks. Continuous batching schedules "
            "requests at every iteration. Notebooks keep one engine alive inside the kernel process. ")


def greedy(llm, prompt, max_tokens, **kw):
    prompt = prompt if isinstance(prompt, dict) else {"prompt": prompt}
    return llm.generate(prompt, SamplingParams(temperature=0, max_tokens=max_tokens, **kw))[0].outputs[0].text


@pytest.fixture
def fresh_llm(llama_dir):
    """An engine of its own: peak_num_running and the prefix cache start from nothing."""
    llm = LLM(llama_dir, num_kv_blocks=256)
    yield llm
    llm.shutdown()


def test_greedy_program_equals_llm_generate_on_the_same_prompts(shared_llm):
    @sgl.function
    def two_steps(s, topic):
        s += "The quick brown " + topic
        s += sgl.gen("a", max_tokens=12)
        s += " Continuous batching"
        s += sgl.gen("b", max_tokens=12)

    st = two_steps.run(topic="fox", temperature=0, backend=shared_llm)
    p1 = "The quick brown fox"
    a = greedy(shared_llm, p1, 12)
    p2 = p1 + a + " Continuous batching"
    b = greedy(shared_llm, p2, 12)
    assert (st["a"], st["b"]) == (a, b)
    assert st.text == p2 + b
    assert st.stats.num_requests == 2


def test_roles_render_the_chat_template_and_generate_like_llm_chat(shared_llm):
    @sgl.function
    def chat(s, question):
        s += sgl.system("You are terse.")
        s += sgl.user(question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=10))

    st = chat.run(question="Explain KV caches.", temperature=0, backend=shared_llm)
    conv = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Explain KV caches."}]
    prompt = shared_llm.apply_chat_template(conv)           # add_generation_prompt=True
    im_end = shared_llm.tokenizer.convert_tokens_to_ids("<|im_end|>")
    answer = greedy(shared_llm, {"prompt_token_ids": prompt["prompt_token_ids"]}, 10, stop_token_ids=[im_end])
    assert st["answer"] == answer
    assert st.text == prompt["prompt"] + answer + "<|im_end|>\n"
    assert st.messages() == conv + [{"role": "assistant", "content": answer.lstrip()}]


def test_with_user_block_equals_the_expression_form(shared_llm):
    @sgl.function
    def blocks(s):
        with s.user():
            s += "Hello"
        with s.assistant():
            s += "Hi there"

    @sgl.function
    def exprs(s):
        s += sgl.user("Hello") + sgl.assistant("Hi there")

    conv = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there"}]
    rendered = shared_llm.tokenizer.apply_chat_template(conv, tokenize=False)
    assert blocks.run(backend=shared_llm).text == exprs.run(backend=shared_llm).text == rendered


def test_prefix_cache_serves_the_shared_text_and_the_ratio_is_reported(fresh_llm):
    @sgl.function
    def steps(s):
        s += PREAMBLE
        s += sgl.gen("a", max_tokens=4)
        s += " And"
        s += sgl.gen("b", max_tokens=4)

    st = steps.run(temperature=0, backend=fresh_llm)
    tok = fresh_llm.tokenizer
    p1 = len(tok.encode(PREAMBLE))
    p2 = len(tok.encode(PREAMBLE + st["a"] + " And"))
    assert st.stats.num_requests == 2
    assert st.stats.prompt_tokens == p1 + p2
    # the second request found at least the first prompt's full blocks in the radix cache
    assert st.stats.cached_tokens >= (p1 // 16) * 16 > 0
    assert st.prefix_hit_ratio == pytest.approx(st.stats.cached_tokens / (p1 + p2))


def test_requests_carry_the_program_id(fresh_llm):
    @sgl.function
    def long_one(s):
        s += "Once upon a time"
        s += sgl.gen("story", max_tokens=300, ignore_eos=True)

    st = long_one.run(backend=fresh_llm, stream=True)
    seen = set()
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        seen = {r.program_id for r in fresh_llm.stats().requests.values()}
        time.sleep(0.005)
    st.cancel()
    st.error()
    assert st.program_id in seen and st.program_id.startswith("sgl-long_one-")


def test_forks_decode_in_one_batch_and_equal_greedy_generate(fresh_llm):
    @sgl.function
    def tips(s):
        s += "Here are four tips for writing fast kernels, the ones that matter on every GPU:"
        forks = s.fork(4)
        forks += lambda i: f"\nTip {i + 1}:" + sgl.gen("tip", max_tokens=24, ignore_eos=True)
        forks.join()

    st = tips.run(temperature=0, backend=fresh_llm)
    assert fresh_llm.stats().peak_num_running >= 2
    prefix = "Here are four tips for writing fast kernels, the ones that matter on every GPU:"
    expected = [greedy(fresh_llm, prefix + f"\nTip {i + 1}:", 24, ignore_eos=True) for i in range(4)]
    assert st["tip"] == expected
    # one per fork, after one for the shared prefix when it fills a KV block (it can be shared then)
    shared = len(fresh_llm.tokenizer.encode(prefix)) >= fresh_llm.config.block_size
    assert st.stats.num_requests == 4 + shared


def test_run_batch_runs_programs_together(fresh_llm):
    @sgl.function
    def complete(s, start):
        s += start
        s += sgl.gen("rest", max_tokens=16, ignore_eos=True)

    starts = ["The quick brown fox", "A paged KV cache", "Once upon a time", "Notebooks keep",
              "def generate(prompt", "Continuous batching"]
    states = complete.run_batch([{"start": x} for x in starts], temperature=0, backend=fresh_llm,
                                num_threads=6, progress_bar=True)
    assert fresh_llm.stats().peak_num_running >= 2
    assert [st["rest"] for st in states] == [greedy(fresh_llm, x, 16, ignore_eos=True) for x in starts]


def test_streaming_from_the_engine(shared_llm):
    @sgl.function
    def story(s):
        s += "Once upon a time"
        s += sgl.gen("a", max_tokens=20, ignore_eos=True)
        s += " The end."

    st = story.run(temperature=0, backend=shared_llm, stream=True)
    chunks = list(st.text_iter())
    assert len(chunks) > 3
    assert "".join(chunks) == st.text == "Once upon a time" + st["a"] + " The end."


def test_cancel_frees_every_block(fresh_llm):
    @sgl.function
    def fan(s):
        s += "Once upon a time"
        forks = s.fork(3)
        forks += sgl.gen("x", max_tokens=400, ignore_eos=True)
        forks.join()

    st = fan.run(backend=fresh_llm, stream=True)
    deadline = time.monotonic() + 60
    while fresh_llm.stats().num_running < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    st.cancel()
    assert isinstance(st.error(), sgl.lang.errors.ProgramCancelled)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        stats = fresh_llm.stats()
        if stats.num_running == 0 and stats.blocks_used == 0:
            break
        time.sleep(0.01)
    assert (stats.num_running, stats.num_waiting, stats.blocks_used) == (0, 0, 0)


def test_engine_errors_name_the_program_line(shared_llm):
    @sgl.function
    def too_long(s):
        s += "word " * 3000
        s += sgl.gen("x")

    with pytest.raises(ValueError, match="max_model_len") as info:
        too_long.run(backend=shared_llm)
    line = too_long.func.__code__.co_firstlineno + 3
    assert info.value._sgl_where == f"test_sgl_engine.py line {line}"
