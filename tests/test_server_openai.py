"""The official `openai` client against `nbinfer serve` (a served engine on a loopback port): greedy
text equals the in-process engine's, and vLLM's response shapes (streams, n, logprobs, echo, chat,
models, tokenize, structured outputs, metrics) come back as the client expects them."""
import json

import httpx
import pytest

from nbinfer import SamplingParams
from server_testing import served

openai = pytest.importorskip("openai")

PROMPT = "Once upon a time, there was a little dog named Max."
CHAT = [{"role": "user", "content": "Tell me a story about a brave cat named Mia."}]


@pytest.fixture(scope="module")
def server():
    with served() as (llm, srv):
        yield llm, srv


@pytest.fixture(scope="module")
def client(server):
    _, srv = server
    return openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)


def greedy(llm, prompt, **kw):
    return llm.generate(prompt, SamplingParams(temperature=0.0, **kw))[0]


def test_models_lists_the_served_model_with_max_model_len(server, client):
    llm, _ = server
    models = client.models.list()
    assert [m.id for m in models.data] == ["default"]
    assert models.data[0].owned_by == "nbinfer"
    assert models.data[0].model_extra["max_model_len"] == llm.max_model_len


def test_completion_greedy_text_equals_the_in_process_engine(server, client):
    llm, _ = server
    r = client.completions.create(model="default", prompt=PROMPT, max_tokens=24, temperature=0)
    local = greedy(llm, PROMPT, max_tokens=24)
    assert r.choices[0].text == local.outputs[0].text
    assert r.choices[0].finish_reason == "length"
    assert r.usage.prompt_tokens == len(local.prompt_token_ids)
    assert r.usage.completion_tokens == 24


def test_completion_batch_of_prompts_and_token_ids(server, client):
    llm, _ = server
    ids = llm.tokenizer.encode("Long ago, there was a brave bunny named Tom.")
    r = client.completions.create(model="default", prompt=[PROMPT, "One sunny day,"], max_tokens=10, temperature=0)
    assert [c.index for c in r.choices] == [0, 1]
    assert r.choices[1].text == greedy(llm, "One sunny day,", max_tokens=10).outputs[0].text
    r = client.completions.create(model="default", prompt=ids, max_tokens=10, temperature=0)
    assert r.choices[0].text == greedy(llm, {"prompt_token_ids": ids}, max_tokens=10).outputs[0].text
    r = client.completions.create(model="default", prompt=[ids, ids[:5]], max_tokens=4, temperature=0)
    assert len(r.choices) == 2


def test_completion_stream_concatenates_to_the_greedy_text_and_reports_usage(server, client):
    llm, _ = server
    stream = client.completions.create(model="default", prompt=PROMPT, max_tokens=20, temperature=0, stream=True,
                                       stream_options={"include_usage": True})
    text, reasons, usage = "", [], None
    for chunk in stream:
        for c in chunk.choices:
            text += c.text
            reasons.append(c.finish_reason)
        if chunk.usage is not None:
            usage = chunk.usage
    assert text == greedy(llm, PROMPT, max_tokens=20).outputs[0].text
    assert reasons[-1] == "length" and set(reasons[:-1]) == {None}
    assert usage.completion_tokens == 20


def test_completion_n_with_seed_gives_n_choices(server, client):
    r = client.completions.create(model="default", prompt=PROMPT, max_tokens=8, temperature=1.0, n=3, seed=7)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    again = client.completions.create(model="default", prompt=PROMPT, max_tokens=8, temperature=1.0, n=3, seed=7)
    assert [c.text for c in r.choices] == [c.text for c in again.choices]      # seeded: reproducible
    assert r.usage.completion_tokens == 24


def test_completion_logprobs_match_the_engine(server, client):
    llm, _ = server
    r = client.completions.create(model="default", prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3)
    lp = r.choices[0].logprobs
    local = greedy(llm, PROMPT, max_tokens=6, logprobs=3).outputs[0]
    assert len(lp.tokens) == 6 and "".join(lp.tokens) == r.choices[0].text
    for tid, mine, theirs in zip(local.token_ids, lp.token_logprobs, local.logprobs):
        assert mine == pytest.approx(theirs[tid].logprob, abs=1e-5)
    assert all(len(top) >= 3 for top in lp.top_logprobs)
    assert lp.text_offset[0] == 0 and lp.text_offset[1] == len(lp.tokens[0])


def test_echo_returns_the_prompt_and_its_logprobs(server, client):
    llm, _ = server
    r = client.completions.create(model="default", prompt=PROMPT, max_tokens=4, temperature=0, echo=True, logprobs=1)
    c = r.choices[0]
    assert c.text.startswith(PROMPT)
    n_prompt = len(llm.tokenizer.encode(PROMPT))
    assert len(c.logprobs.tokens) == n_prompt + 4
    assert c.logprobs.token_logprobs[0] is None and all(v is not None for v in c.logprobs.token_logprobs[1:])
    # max_tokens=0 with echo scores the prompt only (what lm-eval style clients send)
    r = client.completions.create(model="default", prompt=PROMPT, max_tokens=0, echo=True, logprobs=0)
    assert r.choices[0].text == PROMPT and len(r.choices[0].logprobs.tokens) == n_prompt
    assert r.usage.completion_tokens == 0


def test_chat_greedy_and_stream_equal_the_engine(server, client):
    llm, _ = server
    local = llm.chat(CHAT, SamplingParams(temperature=0.0, max_tokens=24))[0].outputs[0].text
    r = client.chat.completions.create(model="default", messages=CHAT, max_tokens=24, temperature=0)
    assert r.choices[0].message.content == local
    assert r.choices[0].message.role == "assistant"
    stream = client.chat.completions.create(model="default", messages=CHAT, max_tokens=24, temperature=0,
                                            stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == local
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_chat_logprobs_with_top_logprobs(server, client):
    r = client.chat.completions.create(model="default", messages=CHAT, max_tokens=5, temperature=0, logprobs=True,
                                       top_logprobs=2)
    content = r.choices[0].logprobs.content
    assert len(content) == 5
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 2
        assert t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob
        assert t.bytes == list(t.token.encode())


def test_structured_outputs_regex_choice_and_json_schema(server, client):
    r = client.completions.create(model="default", prompt=PROMPT, max_tokens=12, temperature=1.0, seed=1,
                                  extra_body={"structured_outputs": {"regex": "[0-9]{4}"}})
    assert len(r.choices[0].text) == 4 and r.choices[0].text.isdigit()
    r = client.completions.create(model="default", prompt=PROMPT, max_tokens=12, temperature=1.0, seed=2,
                                  extra_body={"structured_outputs": {"choice": ["yes", "no way"]}})
    assert r.choices[0].text in ("yes", "no way")
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
              "additionalProperties": False}
    r = client.chat.completions.create(model="default", messages=CHAT, max_tokens=40, temperature=0,
                                       response_format={"type": "json_schema",
                                                        "json_schema": {"name": "x", "schema": schema}})
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content)["n"], int)
    else:       # cut by max_tokens: still the start of a match
        assert r.choices[0].message.content.startswith('{"n":')


def test_min_tokens_holds_back_the_end(server, client):
    llm, _ = server
    # greedy, this model ends its chat answer early; min_tokens keeps it going
    short = llm.chat(CHAT, SamplingParams(temperature=0.0, max_tokens=200))[0].outputs[0]
    assert short.finish_reason == "stop"
    need = len(short.token_ids) + 5
    r = client.chat.completions.create(model="default", messages=CHAT, max_tokens=need + 10, temperature=0,
                                       extra_body={"min_tokens": need})
    assert r.usage.completion_tokens >= need


def test_tokenize_detokenize_version_health(server):
    llm, srv = server
    http = httpx.Client(base_url=srv.url, timeout=30)
    t = http.post("/tokenize", json={"prompt": PROMPT}).json()
    assert t["tokens"] == llm.tokenizer.encode(PROMPT) and t["count"] == len(t["tokens"])
    assert t["max_model_len"] == llm.max_model_len
    assert http.post("/detokenize", json={"tokens": t["tokens"][1:]}).json()["prompt"] == PROMPT
    chat = http.post("/tokenize", json={"messages": CHAT}).json()
    assert chat["tokens"] == llm.apply_chat_template(CHAT)["prompt_token_ids"]
    assert http.get("/version").json()["version"]
    assert http.get("/health").status_code == 200


def test_metrics_use_vllm_names_and_count_server_requests(server, client):
    _, srv = server
    client.completions.create(model="default", prompt=PROMPT, max_tokens=3, temperature=0)
    text = httpx.get(srv.url + "/metrics").text
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:prefix_cache_hits_total",
                 "vllm:prefix_cache_queries_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_count", "vllm:request_success_total"):
        assert name in text, name
    from prometheus_client.parser import text_string_to_metric_families
    values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values["vllm:e2e_request_latency_seconds_count"] >= 1
    assert values["vllm:generation_tokens_total"] >= 3


def test_concurrent_clients_get_the_engines_greedy_text_and_leave_no_blocks(server, client):
    from concurrent.futures import ThreadPoolExecutor

    from server_testing import idle, wait_until
    llm, _ = server
    prompts = [f"Once upon a time, there was a {w} named Max." for w in
               ("dog", "cat", "bird", "fox", "bunny", "turtle", "girl", "boy")]
    want = [o.outputs[0].text for o in llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=16))]

    def ask(i):
        if i % 2:
            return client.completions.create(model="default", prompt=prompts[i], max_tokens=16,
                                              temperature=0).choices[0].text
        stream = client.completions.create(model="default", prompt=prompts[i], max_tokens=16, temperature=0,
                                           stream=True)
        return "".join(c.choices[0].text for c in stream if c.choices)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(8))) == want
    wait_until(lambda: idle(llm), what="all blocks back")


def test_a_batch_request_is_pumped_by_one_thread(server, client, monkeypatch):
    # the server reads all the prompts of one HTTP request as one merged stream, on one thread
    import threading
    llm, _ = server
    started = []
    real_start = threading.Thread.start

    def start(self):
        if self.name.startswith("nbinfer-http"):
            started.append(self.name)
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    prompts = [f"Once upon a time, there was a {w}." for w in ("dog", "cat", "bird", "fox", "bunny")]
    got = client.completions.create(model="default", prompt=prompts, max_tokens=8, temperature=0, stream=True)
    texts = [""] * len(prompts)
    for chunk in got:
        for c in chunk.choices:
            texts[c.index] += c.text
    monkeypatch.undo()
    assert len(started) == 1, started
    assert texts == [o.outputs[0].text for o in llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=8))]
