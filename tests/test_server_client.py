"""RemoteLLM, nbinfer's LLM interface over HTTP: against `nbinfer serve` through both APIs it returns
what the in-process engine returns (greedy), streams, cancels (the server frees the blocks), and says
what a server cannot do instead of silently doing less."""
import json

import httpx
import pytest

from nbinfer import SamplingParams
from nbinfer.server import RemoteLLM
from nbinfer.server.remote_capabilities import RemoteFeatureError
from nbinfer.server.remote_handle import RemoteRequestError
from server_testing import idle, served, wait_until

PROMPT = "Once upon a time, there was a little dog named Max."
CHAT = [{"role": "user", "content": "Tell me a story about a brave cat named Mia."}]


@pytest.fixture(scope="module")
def server():
    with served(api_key="k") as (llm, srv):
        yield llm, srv


@pytest.fixture(scope="module", params=["openai", "sglang"])
def remote(request, server):
    _, srv = server
    with RemoteLLM(srv.url, api_key="k", api=request.param) as r:
        yield r


def test_capabilities_name_the_server(remote, server):
    llm, srv = server
    caps = remote.capabilities
    assert caps.server == "nbinfer" and caps.model == "default" and caps.max_model_len == llm.max_model_len
    assert caps.prompt_logprobs and caps.constraints and caps.token_ids
    assert "nbinfer" in repr(remote)


def test_generate_equals_the_in_process_engine(remote, server):
    llm, _ = server
    prompts = [PROMPT, {"prompt_token_ids": llm.tokenizer.encode("One sunny day,")}]
    params = SamplingParams(temperature=0.0, max_tokens=16, logprobs=2)
    mine, theirs = remote.generate(prompts, params), llm.generate(prompts, params)
    for a, b in zip(mine, theirs):
        ca, cb = a.outputs[0], b.outputs[0]
        assert (ca.text, ca.token_ids, ca.finish_reason) == (cb.text, cb.token_ids, cb.finish_reason)
        for tid, ea, eb in zip(cb.token_ids, ca.logprobs, cb.logprobs):
            assert ea[tid].logprob == pytest.approx(eb[tid].logprob, abs=1e-5)
            assert set(ea) >= {t for t, lp in eb.items() if lp.rank is not None and lp.rank <= 2}


def test_n_samples_and_chat(remote, server):
    llm, _ = server
    out = remote.generate(PROMPT, SamplingParams(n=2, max_tokens=6, seed=3))[0]
    assert [c.index for c in out.outputs] == [0, 1] and all(c.text for c in out.outputs)
    local = llm.chat(CHAT, SamplingParams(temperature=0.0, max_tokens=20))[0].outputs[0]
    got = remote.chat(CHAT, SamplingParams(temperature=0.0, max_tokens=20))[0].outputs[0]
    assert got.text == local.text


def test_prompt_logprobs_for_scoring(remote, server):
    llm, _ = server
    ids = llm.tokenizer.encode(PROMPT)
    p = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
    got = remote.generate({"prompt_token_ids": ids}, p)[0].prompt_logprobs
    want = llm.generate({"prompt_token_ids": ids}, p)[0].prompt_logprobs
    assert got[0] is None and len(got) == len(ids)
    for pos in range(1, len(ids)):
        assert got[pos][ids[pos]].logprob == pytest.approx(want[pos][ids[pos]].logprob, abs=1e-5)


def test_constraints_are_enforced_by_the_server(remote):
    sample = SamplingParams(temperature=1.0, max_tokens=10, seed=5)
    assert remote.generate(PROMPT, sample, regex="[0-9]{3}")[0].outputs[0].text.isdigit()
    assert remote.generate(PROMPT, sample, choice=["red", "blue"])[0].outputs[0].text in ("red", "blue")
    schema = {"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"],
              "additionalProperties": False}
    text = remote.generate(PROMPT, SamplingParams(temperature=0.0, max_tokens=20), json_schema=schema)[0].outputs[0].text
    assert isinstance(json.loads(text)["a"], bool)


def test_submit_streams_and_cancel_frees_the_servers_blocks(remote, server):
    llm, _ = server
    h = remote.submit(PROMPT, SamplingParams(temperature=0.0, max_tokens=300, ignore_eos=True))
    deltas = []
    for delta in h:
        deltas.append(delta)
        if len(deltas) == 3:
            break
    wait_until(lambda: llm.stats().num_running == 1, what="the remote request to run")
    h.cancel()
    out = h.result()
    assert out.outputs[0].finish_reason == "abort" and out.outputs[0].text.startswith("".join(deltas))
    wait_until(lambda: idle(llm), what="the server to abort the closed stream")
    full = remote.submit(PROMPT, SamplingParams(temperature=0.0, max_tokens=12))
    assert "".join(full) == full.result().outputs[0].text


def test_server_errors_and_bad_keys_are_one_clear_error(remote, server):
    _, srv = server
    bad = SamplingParams(max_tokens=2)
    bad.top_p = 7.0         # past the client's own checks: the server names the field
    with pytest.raises(RemoteRequestError, match="top_p"):
        remote.generate(PROMPT, bad)
    with pytest.raises(RemoteFeatureError, match="API key"):
        RemoteLLM(srv.url, api_key="wrong")
    metrics = remote.metrics()
    assert metrics["vllm:num_requests_running"] >= 0 and "vllm:generation_tokens_total" in metrics


# -- servers that can do less ---------------------------------------------------------------------

def _fake_server(owned_by: str, version: str = "0.1", seen: list | None = None):
    """An OpenAI-compatible server that answers one canned stream (in-memory transport, no sockets)."""
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [
                {"id": "m", "object": "model", "owned_by": owned_by, "max_model_len": 128}]})
        if path == "/version":
            return httpx.Response(200, json={"version": version})
        if path in ("/v1/completions", "/v1/chat/completions"):
            body = json.loads(request.content)
            if seen is not None:
                seen.append(body)
            if body.get("stream") is False:        # as vLLM 0.32 answers: prompt_logprobs only here
                return httpx.Response(200, json={"choices": [{
                    "index": 0, "text": "x", "finish_reason": "length", "token_ids": [7],
                    "prompt_token_ids": [1, 2], "prompt_logprobs": [
                        None, {"2": {"logprob": -0.5, "rank": 1, "decoded_token": " b"}}]}]})
            chunks = [{"choices": [{"index": 0, "text": "hello", "finish_reason": None}]},
                      {"choices": [{"index": 0, "text": " world", "finish_reason": "length"}]}]
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(404, json={"error": {"message": "no"}})
    return httpx.MockTransport(handle)


def test_a_plain_openai_compatible_server_says_what_it_cannot_do():
    with RemoteLLM("http://fake", transport=_fake_server("someone")) as r:
        caps = r.capabilities
        assert caps.server == "openai-compatible" and not caps.constraints and not caps.prompt_logprobs
        assert r.generate("hi", SamplingParams(max_tokens=2))[0].outputs[0].text == "hello world"
        with pytest.raises(RemoteFeatureError, match=r"constrained output \(regex\).*openai-compatible"):
            r.generate("hi", regex="[0-9]+")
        with pytest.raises(RemoteFeatureError, match="prompt_logprobs|prompt logprobs"):
            r.generate("hi", SamplingParams(prompt_logprobs=0))
        with pytest.raises(RemoteFeatureError, match="top_k"):
            r.generate("hi", SamplingParams(top_k=5))
        with pytest.raises(ValueError, match="at most one of regex=, json_schema=, choice="):
            r.generate("hi", SamplingParams(max_tokens=2), regex="a", choice=["b"])


@pytest.mark.parametrize("version, field", [("0.10.1", "guided_regex"), ("0.32.0", "structured_outputs")])
def test_vllm_gets_constraints_under_its_versions_field_name(version, field):
    seen = []
    with RemoteLLM("http://fake", transport=_fake_server("vllm", version, seen)) as r:
        assert r.capabilities.server == "vllm" and r.capabilities.constraints
        r.generate("hi", SamplingParams(max_tokens=2), regex="[0-9]+")
    assert field in seen[0]
    assert seen[0]["return_token_ids"] is True and seen[0]["stream"] is True


def test_prompt_logprobs_from_vllm_come_from_a_non_streamed_answer():
    """vLLM leaves prompt_logprobs out of streamed completions (seen against vllm 0.32 by hand)."""
    seen = []
    with RemoteLLM("http://fake", transport=_fake_server("vllm", "0.32.0", seen)) as r:
        out = r.generate({"prompt_token_ids": [1, 2]}, SamplingParams(max_tokens=1, prompt_logprobs=0))[0]
    assert seen[0]["stream"] is False and seen[0]["prompt_logprobs"] == 0
    assert out.prompt_logprobs[1][2].logprob == -0.5 and out.outputs[0].token_ids == [7]
    assert out.outputs[0].text == "x" and out.prompt_token_ids == [1, 2]
