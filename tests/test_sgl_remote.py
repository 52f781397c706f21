"""SGL programs on a remote server through nbinfer's own remote backends -- `sgl.RuntimeEndpoint(url)`
(SGLang's native API) and `sgl.OpenAI(base_url=...)` (the OpenAI API) -- against `nbinfer serve` on
loopback: gen, roles, select, regex, JSON, fork, run_batch give what the in-process engine gives
(greedy). Servers that cannot do a feature (stand-ins) make it an error naming the feature and the
server, never a silently unconstrained output."""
import json
import re

import httpx
import pytest

import nbinfer as sgl
from nbinfer.lang.backends import OpenAI, RemoteBackend, RuntimeEndpoint, as_backend, backend_kinds
from nbinfer.server import RemoteLLM
from nbinfer.server.remote_capabilities import RemoteFeatureError
from server_testing import idle, served, wait_until
from sgl_programs import load_programs


@sgl.function
def scored(s):
    s += "One sunny day, there was a curious girl named Lily. She saw a"
    s += sgl.select("again", choices=[" cat", " tree", " ball"],
                    choices_method=sgl.unconditional_likelihood_normalized)


@sgl.function
def shaped(s):
    s += "Long ago, there was a brave bunny named Tom. He said: "
    s += sgl.gen("said", max_tokens=40, json_schema={"type": "object", "properties": {"happy": {"type": "boolean"}},
                                                      "required": ["happy"], "additionalProperties": False})


@pytest.fixture(scope="module")
def progs(tmp_path_factory):
    """The programs SGLang's own frontend runs against nbinfer serve (test_server_sglang.py)."""
    return load_programs(tmp_path_factory.mktemp("remote_programs"), "progs_remote", "import nbinfer as sgl")


ARGS = {"story": {"name": "Max"}, "chat": {"question": "Tell me a story about a brave cat."}}


@pytest.fixture(scope="module")
def server():
    with served() as (llm, srv):
        yield llm, srv


@pytest.fixture(scope="module", params=["RuntimeEndpoint", "OpenAI"])
def backend(request, server):
    _, srv = server
    b = sgl.RuntimeEndpoint(srv.url) if request.param == "RuntimeEndpoint" else sgl.OpenAI(base_url=srv.url + "/v1")
    yield b
    b.shutdown()


@pytest.mark.parametrize("name", ["story", "chat", "pick", "number", "branches", "scored", "shaped"])
def test_programs_equal_the_in_process_engine(name, progs, backend, server):
    llm, _ = server
    program = globals().get(name) or getattr(progs, name)
    remote = program.run(backend=backend, temperature=0, **ARGS.get(name, {}))
    local = program.run(backend=llm, temperature=0, **ARGS.get(name, {}))
    assert remote.text() == local.text() and remote.text()
    assert remote.ret_value == local.ret_value
    assert [m["role"] for m in remote.messages()] == [m["role"] for m in local.messages()]
    if name == "number":
        assert remote["age"].isdigit()
    if name == "shaped":
        assert isinstance(json.loads(remote["said"])["happy"], bool)
    wait_until(lambda: idle(llm), what="the server to release every block")


def test_run_batch_equals_the_in_process_engine(progs, backend, server):
    llm, _ = server
    names = [{"name": n} for n in ("Max", "Lily", "Tom", "Mia")]
    remote = progs.story.run_batch(names, backend=backend, temperature=0, num_threads=4)
    local = progs.story.run_batch(names, backend=llm, temperature=0, num_threads=4)
    assert [s["story"] for s in remote] == [s["story"] for s in local]


def test_roles_come_from_the_models_template_rendered_by_the_server(backend, server):
    llm, _ = server
    mine, theirs = backend.chat_template, as_backend(llm).chat_template
    history = [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]
    for role in ("system", "user", "assistant"):
        assert mine.role_prefix(role, history) == theirs.role_prefix(role, history)
        assert mine.role_suffix(role, history) == theirs.role_suffix(role, history)
        assert mine.stop_token_ids(role) == theirs.stop_token_ids(role)


def test_cancel_closes_the_streams_and_the_server_frees_the_blocks(backend, server):
    llm, _ = server

    @sgl.function
    def long(s):
        s += "Once upon a time"
        forks = s.fork(2)
        forks += sgl.gen("x", max_tokens=400, ignore_eos=True)
        forks.join()

    state = long.run(backend=backend, temperature=0, stream=True)
    wait_until(lambda: llm.stats().num_running == 2, what="both forks to run on the server")
    state.cancel()
    assert state.error() is not None
    wait_until(lambda: idle(llm), what="the server to abort the closed streams")


def test_registered_kinds_wrap_a_remote_client(server):
    _, srv = server
    assert {"sglang", "openai"} <= set(backend_kinds())
    with RemoteLLM(srv.url, api="sglang") as native, RemoteLLM(srv.url, api="openai") as oai:
        assert type(as_backend(native)) is RuntimeEndpoint and as_backend(native) is as_backend(native)
        assert type(as_backend(oai)) is OpenAI
        assert sgl.get_server_info(as_backend(oai))["server"] == "nbinfer"
        assert sgl.flush_cache(as_backend(native))


def test_openai_backend_needs_a_server():
    with pytest.raises(ValueError, match="base_url"):
        sgl.OpenAI("m")


# -- servers that can do less ---------------------------------------------------------------------

def _plain_openai_server(seen: list):
    """An OpenAI-compatible server that is neither vLLM nor nbinfer: no token ids, no prompt
    log-probs, no constraints, no /tokenize."""
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "object": "model", "owned_by": "someone"}]})
        if path == "/v1/completions":
            seen.append(json.loads(request.content))
            chunks = [{"choices": [{"index": 0, "text": " hello", "finish_reason": "length"}]}]
            body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(404, json={"error": {"message": "not found"}})
    return httpx.MockTransport(handle)


@pytest.fixture
def plain():
    seen = []
    remote = RemoteLLM("http://stand-in", transport=_plain_openai_server(seen))
    yield as_backend(remote), seen
    remote.close()


def test_plain_text_runs_on_a_plain_openai_server(plain, progs):
    backend, seen = plain
    state = progs.story.run(backend=backend, name="Max", temperature=0)
    assert state["story"] == " hello" and seen[0]["prompt"].endswith("named Max.")


@pytest.mark.parametrize("name, feature", [
    ("pick", r"select \(it scores each choice by prompt log-probs of token ids\) is not supported by the "
             r"openai-compatible server at http://stand-in"),
    ("number", r"constrained output \(regex\) is not supported by the openai-compatible server at http://stand-in"),
    ("chat", r"roles need the model's chat template, and the openai-compatible server at http://stand-in cannot "
             r"render it \(no /tokenize\); name one of SGLang's templates with chat_template_name="),
])
def test_what_a_server_cannot_do_is_an_error_naming_feature_and_server(plain, progs, name, feature):
    backend, seen = plain
    with pytest.raises((RemoteFeatureError, sgl.SglError)) as e:
        getattr(progs, name).run(backend=backend, temperature=0, **ARGS.get(name, {}))
    assert re.search(feature, str(e.value)), str(e.value)
    assert not seen, "nothing may be sent for a feature the server lacks"


def test_a_named_template_stands_in_where_the_server_renders_none(plain, progs):
    pytest.importorskip("sglang", reason="SGLang's frontend (its table of chat templates)")
    backend, seen = plain
    named = RemoteBackend(backend.remote, chat_template_name="chatml")
    assert named.chat_template.role_prefix("user", []) == "<|im_start|>user\n"
    state = progs.chat.run(backend=named, question="Hi?", temperature=0)
    assert state.error() is None and state["answer"] == " hello"
    assert seen[0]["prompt"].startswith("<|im_start|>system\nYou are a storyteller.<|im_end|>\n")


def test_feature_errors_are_remote_feature_errors(plain):
    backend, _ = plain
    with pytest.raises(RemoteFeatureError, match="select"):
        backend.choice_logprobs("a", ["b"], None)
