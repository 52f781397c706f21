"""Bad requests are clean 4xx with an OpenAI-style JSON error naming the field, never a 500, and the
engine keeps serving; API keys, body-size limits, and a client that disconnects mid-stream (its
request is aborted and its KV blocks freed)."""
import socket
import time

import httpx
import pytest

from server_testing import idle, served, wait_until

OK_COMPLETION = {"prompt": "Once upon a time", "max_tokens": 2}
OK_CHAT = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
OK_GENERATE = {"text": "Once upon a time", "sampling_params": {"max_new_tokens": 2}}

# (path, body, the field the error must name or None, expected status)
BAD = [
    ("/v1/completions", {}, "prompt", 400),
    ("/v1/completions", {"prompt": 5}, "prompt", 400),
    ("/v1/completions", {"prompt": []}, "prompt", 400),
    ("/v1/completions", {"prompt": [[]]}, "prompt", 400),
    ("/v1/completions", {"prompt": [1, "a"]}, "prompt", 400),
    ("/v1/completions", {"prompt": [-1, 2]}, "prompt", 400),
    ("/v1/completions", {"prompt": [10**9]}, "prompt", 400),
    ("/v1/completions", {"prompt": "x" * 5000}, "prompt", 400),
    ("/v1/completions", {**OK_COMPLETION, "model": "gpt-4"}, "model", 404),
    ("/v1/completions", {**OK_COMPLETION, "temperature": "hot"}, "temperature", 400),
    ("/v1/completions", {**OK_COMPLETION, "temperature": -1}, "temperature", 400),
    ("/v1/completions", {**OK_COMPLETION, "top_p": 0}, "top_p", 400),
    ("/v1/completions", {**OK_COMPLETION, "top_p": 1.5}, "top_p", 400),
    ("/v1/completions", {**OK_COMPLETION, "top_k": 0}, "top_k", 400),
    ("/v1/completions", {**OK_COMPLETION, "top_k": 1.5}, "top_k", 400),
    ("/v1/completions", {**OK_COMPLETION, "min_p": 2}, "min_p", 400),
    ("/v1/completions", {**OK_COMPLETION, "max_tokens": -1}, "max_tokens", 400),
    ("/v1/completions", {**OK_COMPLETION, "max_tokens": "ten"}, "max_tokens", 400),
    ("/v1/completions", {**OK_COMPLETION, "max_tokens": 1.5}, "max_tokens", 400),
    ("/v1/completions", {**OK_COMPLETION, "n": 0}, "n", 400),
    ("/v1/completions", {**OK_COMPLETION, "n": "2"}, "n", 400),
    ("/v1/completions", {**OK_COMPLETION, "best_of": 3}, "best_of", 400),
    ("/v1/completions", {**OK_COMPLETION, "stop": 5}, "stop", 400),
    ("/v1/completions", {**OK_COMPLETION, "stop": [""]}, "stop", 400),
    ("/v1/completions", {**OK_COMPLETION, "stop_token_ids": [-3]}, "stop_token_ids", 400),
    ("/v1/completions", {**OK_COMPLETION, "stop_token_ids": [10**9]}, "stop_token_ids", 400),
    ("/v1/completions", {**OK_COMPLETION, "seed": "abc"}, "seed", 400),
    ("/v1/completions", {**OK_COMPLETION, "seed": 2**70}, "seed", 400),
    ("/v1/completions", {**OK_COMPLETION, "logprobs": -1}, "logprobs", 400),
    ("/v1/completions", {**OK_COMPLETION, "logprobs": 10**7}, "logprobs", 400),
    ("/v1/completions", {**OK_COMPLETION, "logprobs": 21}, "logprobs", 400),          # vLLM's max_logprobs
    ("/v1/completions", {**OK_COMPLETION, "prompt_logprobs": 21}, "prompt_logprobs", 400),
    ("/v1/completions", {**OK_COMPLETION, "echo": "yes"}, "echo", 400),
    ("/v1/completions", {**OK_COMPLETION, "stream": 1}, "stream", 400),
    ("/v1/completions", {**OK_COMPLETION, "stream_options": "x"}, "stream_options", 400),
    ("/v1/completions", {**OK_COMPLETION, "presence_penalty": 5}, "presence_penalty", 400),
    ("/v1/completions", {**OK_COMPLETION, "frequency_penalty": -5}, "frequency_penalty", 400),
    ("/v1/completions", {**OK_COMPLETION, "repetition_penalty": 0}, "repetition_penalty", 400),
    ("/v1/completions", {**OK_COMPLETION, "min_tokens": -2}, "min_tokens", 400),
    ("/v1/completions", {**OK_COMPLETION, "min_tokens": 5}, "min_tokens", 400),
    ("/v1/completions", {**OK_COMPLETION, "logit_bias": {"5": 10}}, "logit_bias", 400),
    ("/v1/completions", {**OK_COMPLETION, "suffix": "end"}, "suffix", 400),
    ("/v1/completions", {**OK_COMPLETION, "prompt_logprobs": -1}, "prompt_logprobs", 400),
    ("/v1/completions", {**OK_COMPLETION, "structured_outputs": {"regex": "("}}, "structured_outputs.regex", 400),
    ("/v1/completions", {**OK_COMPLETION, "structured_outputs": {"choice": []}}, "structured_outputs.choice", 400),
    ("/v1/completions", {**OK_COMPLETION, "structured_outputs": {"json": "{not json"}}, "structured_outputs.json", 400),
    ("/v1/completions", {**OK_COMPLETION, "structured_outputs": {"grammar": "root ::= x"}},
     "structured_outputs.grammar", 400),
    ("/v1/completions", {**OK_COMPLETION, "structured_outputs": {"regex": "a", "choice": ["b"]}},
     "structured_outputs.choice", 400),
    ("/v1/completions", {**OK_COMPLETION, "response_format": {"type": "xml"}}, "response_format.type", 400),
    ("/v1/completions", {**OK_COMPLETION, "response_format": {"type": "json_schema"}},
     "response_format.json_schema", 400),
    ("/v1/chat/completions", {}, "messages", 400),
    ("/v1/chat/completions", {"messages": []}, "messages", 400),
    ("/v1/chat/completions", {"messages": "hi"}, "messages", 400),
    ("/v1/chat/completions", {"messages": [{"content": "hi"}]}, "messages.0.role", 400),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "messages.0.content", 400),
    ("/v1/chat/completions", {**OK_CHAT, "top_logprobs": 3}, "top_logprobs", 400),
    ("/v1/chat/completions", {**OK_CHAT, "logprobs": True, "top_logprobs": 50}, "top_logprobs", 400),
    ("/v1/chat/completions", {**OK_CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", 400),
    ("/v1/chat/completions", {**OK_CHAT, "model": "nope"}, "model", 404),
    ("/v1/chat/completions", {**OK_CHAT, "max_completion_tokens": 0.5}, "max_completion_tokens", 400),
    ("/tokenize", {}, "prompt", 400),
    ("/tokenize", {"prompt": 3}, "prompt", 400),
    ("/detokenize", {"tokens": "abc"}, "tokens", 400),
    ("/detokenize", {"tokens": [10**9]}, "tokens", 400),
    ("/generate", {}, "text", 400),
    ("/generate", {"text": "a", "input_ids": [1]}, "text", 400),
    ("/generate", {"text": []}, "text", 400),
    ("/generate", {"input_ids": [[]]}, "input_ids", 400),
    ("/generate", {"text": 5}, "text", 400),
    ("/generate", {**OK_GENERATE, "sampling_params": {"max_new_tokens": -1}}, "max_new_tokens", 400),
    ("/generate", {**OK_GENERATE, "sampling_params": {"temperature": "x"}}, "sampling_params.temperature", 400),
    ("/generate", {**OK_GENERATE, "sampling_params": {"top_k": 0}}, "top_k", 400),
    ("/generate", {**OK_GENERATE, "sampling_params": {"regex": "("}}, "sampling_params.regex", 400),
    ("/generate", {**OK_GENERATE, "sampling_params": {"json_schema": "{"}}, "sampling_params.json_schema", 400),
    ("/generate", {**OK_GENERATE, "sampling_params": {"ebnf": "x"}}, "sampling_params.ebnf", 400),
    ("/generate", {**OK_GENERATE, "sampling_params": {"min_new_tokens": 5, "max_new_tokens": 2}}, "min_new_tokens", 400),
    ("/generate", {**OK_GENERATE, "sampling_params": [{}, {}]}, "sampling_params", 400),
    ("/generate", {"text": ["a", "b"], "sampling_params": [{"n": 1}, {"n": 2}]}, "sampling_params.n", 400),
    ("/generate", {**OK_GENERATE, "return_logprob": True, "logprob_start_len": 99}, "logprob_start_len", 400),
    ("/generate", {**OK_GENERATE, "return_logprob": True, "top_logprobs_num": -1}, "top_logprobs_num", 400),
    ("/generate", {**OK_GENERATE, "image_data": "http://example.invalid/x.png"}, "image_data", 400),
    ("/generate", {**OK_GENERATE, "lora_path": "x"}, "lora_path", 400),
    ("/generate", {"text": ["a", "b"], "rid": "one"}, "rid", 400),
]


@pytest.fixture(scope="module")
def server():
    with served(max_model_len=256) as (llm, srv):
        yield llm, srv


def _check_error(r, param, status):
    assert r.status_code == status, (r.request.content[:200], r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["code"] == status and isinstance(err["message"], str) and err["message"]
    assert "\n" not in err["message"]
    if param is not None:
        assert err["param"] == param, (param, err)


def test_bad_requests_are_clean_4xx_naming_the_field_and_the_engine_keeps_serving(server):
    llm, srv = server
    assert len(BAD) >= 50
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        for path, body, param, status in BAD:
            _check_error(http.post(path, json=body), param, status)
        # not JSON at all, and a JSON body that is not an object
        for raw in (b"{not json", b"[1, 2]", b"null", b'{"prompt": NaN, "max_tokens": 1}'):
            r = http.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
            _check_error(r, None, 400)
        temperature_nan = http.post("/v1/completions", content=b'{"prompt": "a", "temperature": NaN}',
                                    headers={"content-type": "application/json"})
        _check_error(temperature_nan, "temperature", 400)
        _check_error(http.get("/no/such/route"), None, 404)
        _check_error(http.get("/v1/completions"), None, 405)
        # the engine kept serving through all of it
        assert http.post("/v1/completions", json=OK_COMPLETION).status_code == 200
        assert http.post("/generate", json=OK_GENERATE).status_code == 200
    wait_until(lambda: idle(llm), what="every rejected request to leave no blocks behind")


def test_api_key_guards_every_route_but_health():
    with served(api_key="s3cret") as (llm, srv), httpx.Client(base_url=srv.url, timeout=60) as http:
        assert http.get("/health").status_code == 200
        for method, path in [("GET", "/v1/models"), ("POST", "/v1/completions"), ("POST", "/generate"),
                             ("GET", "/get_model_info"), ("GET", "/metrics"), ("POST", "/flush_cache"),
                             ("GET", "/server_info"), ("POST", "/tokenize"), ("GET", "/version")]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
                r = http.request(method, path, json=OK_COMPLETION, headers=headers)
                _check_error(r, None, 401)
        good = {"Authorization": "Bearer s3cret"}
        assert http.post("/v1/completions", json=OK_COMPLETION, headers=good).status_code == 200
        assert http.get("/get_model_info", headers=good).status_code == 200


def test_request_bodies_are_size_limited(server):
    from nbinfer.server.app import DEFAULT_MAX_BODY_BYTES
    llm, srv = server
    huge = {"prompt": "a" * (DEFAULT_MAX_BODY_BYTES + 10)}
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        _check_error(http.post("/v1/completions", json=huge), None, 413)

        def chunked():      # no Content-Length: the limit is counted as the body arrives
            for _ in range(DEFAULT_MAX_BODY_BYTES // 2**20 + 2):
                yield b"a" * 2**20
        _check_error(http.post("/v1/completions", content=chunked()), None, 413)
        assert http.post("/v1/completions", json=OK_COMPLETION).status_code == 200


def _raw_stream_then_disconnect(srv, path: str, body: bytes, read_bytes: int = 200) -> None:
    """Open a streaming request, read a little of the answer, then drop the connection."""
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    got = b""
    while len(got) < read_bytes:
        got += sock.recv(4096)
    assert b"data:" in got
    sock.close()


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", b'{"prompt": "Once upon a time", "max_tokens": 240, "ignore_eos": true, "stream": true}'),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 240, '
                             b'"ignore_eos": true, "stream": true}'),
    ("/generate", b'{"text": "Once upon a time", "sampling_params": {"max_new_tokens": 240, "ignore_eos": true}, '
                  b'"stream": true}'),
])
def test_a_client_that_disconnects_mid_stream_frees_its_blocks(server, path, body):
    llm, srv = server
    before = llm.stats().generation_tokens_total
    _raw_stream_then_disconnect(srv, path, body)
    wait_until(lambda: idle(llm), timeout=30, what="the abandoned request to be aborted")
    # aborted early: far fewer than the 240 tokens asked for were generated
    assert llm.stats().generation_tokens_total - before < 200


def test_a_client_that_disconnects_while_waiting_for_a_plain_answer_frees_its_blocks(server):
    llm, srv = server
    body = b'{"prompt": "Once upon a time", "max_tokens": 240, "ignore_eos": true}'
    before = llm.stats().generation_tokens_total
    sock = socket.create_connection(("127.0.0.1", srv.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    wait_until(lambda: llm.stats().num_running == 1, what="the request to start")
    sock.close()
    wait_until(lambda: idle(llm), timeout=30, what="the abandoned request to be aborted")
    assert llm.stats().generation_tokens_total - before < 200
    time.sleep(0.1)
    assert httpx.get(srv.url + "/health").status_code == 200
