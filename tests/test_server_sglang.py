"""SGLang's own frontend (`import sglang as sgl`, sglang 0.5.2, `sgl.RuntimeEndpoint(url)`) runs
programs against `nbinfer serve` and gets what `import nbinfer as sgl` gets in process (greedy): gen,
select, fork, roles, regex, run_batch. Also the /generate shapes that frontend reads."""
import httpx
import pytest

from server_testing import idle, served, wait_until
from sgl_programs import load_programs


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    sglang = pytest.importorskip("sglang", reason="SGLang's frontend: pip install --no-deps sglang==0.5.2 "
                                                  "(plus pybase64, aiohttp, requests)")
    tmp = tmp_path_factory.mktemp("sgl_programs")
    with served() as (llm, srv):
        remote = sglang.RuntimeEndpoint(srv.url, chat_template_name="chatml")
        local = llm
        theirs = load_programs(tmp, "progs_sglang", "import sglang as sgl")
        ours = load_programs(tmp, "progs_nbinfer", "import nbinfer as sgl")
        yield llm, srv, remote, local, theirs, ours


def _run(program, backend, **kw):
    return program.run(backend=backend, temperature=0, **kw)


def test_gen_with_stop_matches_in_process(both):
    llm, srv, remote, local, theirs, ours = both
    a = _run(theirs.story, remote, name="Max")
    b = _run(ours.story, local, name="Max")
    assert a["story"] == b["story"] and a["story"]
    assert a.text() == b.text()


def test_roles_and_multi_turn_match_in_process(both):
    llm, srv, remote, local, theirs, ours = both
    a = _run(theirs.chat, remote, question="Tell me a story about a brave cat.")
    b = _run(ours.chat, local, question="Tell me a story about a brave cat.")
    assert a["answer"] == b["answer"] and a["answer"]
    assert a["more"] == b["more"]
    assert [m["role"] for m in a.messages()] == [m["role"] for m in b.messages()]


def test_select_matches_in_process(both):
    llm, srv, remote, local, theirs, ours = both
    a = _run(theirs.pick, remote)
    b = _run(ours.pick, local)
    assert a["animal"] == b["animal"]


def test_regex_matches_in_process(both):
    llm, srv, remote, local, theirs, ours = both
    a = _run(theirs.number, remote)
    b = _run(ours.number, local)
    assert a["age"] == b["age"] and a["age"].isdigit()


def test_fork_and_join_match_in_process(both):
    llm, srv, remote, local, theirs, ours = both
    a = _run(theirs.branches, remote)
    b = _run(ours.branches, local)
    assert a.ret_value == b.ret_value and all(a.ret_value)
    assert a["end"] == b["end"]


def test_run_batch_matches_in_process_and_leaves_no_blocks(both):
    llm, srv, remote, local, theirs, ours = both
    names = [{"name": n} for n in ("Max", "Lily", "Tom", "Mia", "Sam", "Zoe")]
    a = theirs.story.run_batch(names, backend=remote, temperature=0, num_threads=6)
    b = ours.story.run_batch(names, backend=local, temperature=0, num_threads=6)
    assert [s["story"] for s in a] == [s["story"] for s in b]
    wait_until(lambda: idle(llm), what="the batch's blocks to be released")


def test_generate_shapes_the_frontend_reads(both):
    llm, srv, *_ = both
    http = httpx.Client(base_url=srv.url, timeout=60)
    assert "model_path" in http.get("/get_model_info").json()
    text = "Once upon a time, there was a little dog named Max."
    ids = llm.tokenizer.encode(text)
    one = http.post("/generate", json={"text": text, "sampling_params": {"max_new_tokens": 0}}).json()
    assert one["meta_info"]["prompt_tokens"] == len(ids) and one["text"] == ""
    start = len(ids) - 3
    batch = http.post("/generate", json={
        "text": [text + " He", text + " She"], "sampling_params": {"max_new_tokens": 0, "temperature": 0},
        "return_logprob": True, "return_text_in_logprobs": True, "logprob_start_len": start}).json()
    assert isinstance(batch, list) and len(batch) == 2
    lps = batch[0]["meta_info"]["input_token_logprobs"]
    full = llm.tokenizer.encode(text + " He")
    assert [e[1] for e in lps] == full[start:]                 # from logprob_start_len to the end
    assert lps[0][0] is None and all(e[0] is not None for e in lps[1:])
    ref = llm.generate({"prompt_token_ids": full}, __import__("nbinfer").SamplingParams(
        max_tokens=1, prompt_logprobs=0))[0].prompt_logprobs
    for p, e in zip(range(start + 1, len(full)), lps[1:]):
        assert e[0] == pytest.approx(ref[p][full[p]].logprob, abs=1e-5)
        assert e[2] == llm.tokenizer.decode([full[p]])
    # the frontend's unset options arrive as [null]; n > 1 answers with a list; streams are cumulative
    r = http.post("/generate", json={"text": text, "sampling_params": {"max_new_tokens": 4, "n": 2, "temperature": 1},
                                     "logprob_start_len": [None], "top_logprobs_num": [None],
                                     "return_text_in_logprobs": [None]})
    assert r.status_code == 200 and len(r.json()) == 2
    with http.stream("POST", "/generate", json={"text": text, "stream": True,
                                               "sampling_params": {"max_new_tokens": 6, "temperature": 0}}) as s:
        texts = [__import__("json").loads(line[5:])["text"] for line in s.iter_lines()
                 if line.startswith("data:") and line != "data: [DONE]"]
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))
    final = llm.generate(text, __import__("nbinfer").SamplingParams(max_tokens=6, temperature=0))[0].outputs[0].text
    assert texts[-1] == final
    assert http.post("/flush_cache").status_code == 200
    assert http.get("/health_generate").status_code == 200
    info = http.get("/get_server_info").json()
    assert info["server"] == "nbinfer" and http.get("/server_info").json()["max_model_len"] == llm.max_model_len
