"""`%nbinfer connect` against `nbinfer serve` on loopback, through a real IPython shell: %%generate and
%%sgl run on the server and give what its engine gives in process (greedy); the dashboard's frames
come from the server's /metrics and say what a remote cannot show; the stop button cancels the remote
requests and the server frees their blocks; `%nbinfer disconnect` returns to the local engine; a
server that cannot do what a cell asks is one line naming the feature and the server."""
import _thread
import json
import socket
import threading
import time

import httpx
import pytest

pytest.importorskip("IPython")
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from nbinfer import SamplingParams  # noqa: E402
from nbinfer.jupyter import session  # noqa: E402
from nbinfer.jupyter.remote_frame import RemoteMetricsReader  # noqa: E402
from nbinfer.server import RemoteLLM  # noqa: E402
from server_testing import idle, served, wait_until  # noqa: E402
from server_testing import slow_steps as slow_steps_of  # noqa: E402

PROGRAM = '''s += "Once upon a time, there was a little cat named Mia. She had a red ball and a big box."
s += select("animal", choices=[" big dog", " moon", " xylophone quantum"])
forks = s.fork(2)
forks += [" One day,", " Then"]
forks += gen("next", max_tokens=8)
forks.join()
s += " Mia was " + gen("age", max_tokens=4, regex="[0-9]{1,2}") + " years old."
'''


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    before = set(shell.user_ns)
    shell.run_line_magic("load_ext", "nbinfer")
    yield shell
    session.disconnect()
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


@pytest.fixture(scope="module")
def server():
    with served(api_key="secret") as (llm, srv):
        yield llm, srv


@pytest.fixture
def connected(ip, server, capsys):
    llm, srv = server
    ip.run_line_magic("nbinfer", f"connect {srv.url} --api-key secret")
    capsys.readouterr()
    yield llm
    session.disconnect()
    wait_until(lambda: idle(llm), what="the server to be idle after the test")


@pytest.fixture
def slow_steps(server, monkeypatch):
    """The server's steps slowed (the dashboard polls /metrics every 0.5 s)."""
    slow_steps_of(server[0], monkeypatch)


def one_line_usage_error(fn, *args) -> str:
    with pytest.raises(UsageError) as e:
        fn(*args)
    assert "\n" not in str(e.value), str(e.value)
    return str(e.value)


# -- connect / status / disconnect ------------------------------------------------------------------

def test_connect_says_what_it_reached_and_status_names_it(ip, server, llama_dir, capsys):
    llm, srv = server
    ip.run_line_magic("nbinfer", f"connect {srv.url}/v1 --api-key secret --api sglang")
    out = capsys.readouterr().out
    assert out.startswith(f"nbinfer: connected to nbinfer 0.1.0 at {srv.url} (sglang API) · model default · "
                          f"max_model_len {llm.max_model_len}")
    assert session.current_target() is session.current_remote()
    ip.run_line_magic("nbinfer", "status")
    out = capsys.readouterr().out
    assert f"cells run on the remote server: nbinfer 0.1.0 at {srv.url} (sglang API)" in out
    assert "remote     default · nbinfer 0.1.0" in out and "KV cache   0% used of 256 blocks" in out
    assert "not shown for a remote server: the block map" in out
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 16")       # a local model meanwhile
    assert capsys.readouterr().out.endswith(f"nbinfer: cells still run on the remote server at {srv.url} "
                                            "(`%nbinfer disconnect` to use this model)\n")
    assert session.current_target() is session.current_remote()
    ip.run_line_magic("nbinfer", "disconnect")
    out = capsys.readouterr().out
    assert out == (f"nbinfer: disconnected from {srv.url}; cells run on the local engine "
                   f"({llama_dir} (float32, cpu))\n")
    assert session.current_target() is session.current_llm()
    session.unload_llm()
    assert session.current_remote() is None
    ip.run_line_magic("nbinfer", "disconnect")
    assert capsys.readouterr().out == "nbinfer: not connected to a remote server\n"


def test_connect_errors_are_one_line(ip, server):
    _, srv = server
    with socket.socket() as s:           # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert one_line_usage_error(ip.run_line_magic, "nbinfer", "connect ftp://x") == (
        "%nbinfer connect: URL must start with http:// or https://, got 'ftp://x'")
    assert "no OpenAI-compatible (/v1/models) or SGLang (/get_model_info) API answers at http://127.0.0.1:" in \
        one_line_usage_error(ip.run_line_magic, "nbinfer", f"connect http://127.0.0.1:{closed}")
    assert "refused the API key (401)" in one_line_usage_error(
        ip.run_line_magic, "nbinfer", f"connect {srv.url} --api-key wrong")
    assert "invalid choice: 'grpc'" in one_line_usage_error(
        ip.run_line_magic, "nbinfer", f"connect {srv.url} --api grpc")
    assert session.current_remote() is None


# -- %%generate -------------------------------------------------------------------------------------

def test_generate_runs_on_the_server_and_equals_its_engine(ip, connected):
    llm = connected
    ip.run_cell_magic("generate", "--temperature 0 --max-tokens 16 --out g",
                      "Once upon a time, there was a dog\n---\nOne sunny day, Lily")
    g = ip.user_ns["g"]
    want = llm.generate(["Once upon a time, there was a dog", "One sunny day, Lily"],
                        SamplingParams(temperature=0.0, max_tokens=16))
    assert g.texts == [o.outputs[0].text for o in want] and all(g.texts)
    assert [o.outputs[0].token_ids for o in g.outputs] == [o.outputs[0].token_ids for o in want]
    ip.run_cell_magic("generate", "--chat --system 'You tell stories.' --temperature 0 --max-tokens 12 --out c",
                      "Tell me about a cat.")
    chat = llm.chat([{"role": "system", "content": "You tell stories."},
                     {"role": "user", "content": "Tell me about a cat."}],
                    SamplingParams(temperature=0.0, max_tokens=12))[0].outputs[0].text
    assert ip.user_ns["c"].text == chat


def test_stop_button_cancels_the_remote_requests_and_the_server_frees_their_blocks(ip, connected, slow_steps, capsys):
    llm = connected

    def interrupt_when_running():
        wait_until(lambda: llm.stats().num_running == 2, what="both requests to run on the server")
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_running, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as stopped:
        ip.run_cell_magic("generate", "--max-tokens 400 --out long", "Once upon a time\n---\nOne day")
    assert stopped.value._render_traceback_() == ["interrupted: 2 requests cancelled, their KV blocks freed"]
    assert ip.user_ns["long"].interrupted
    wait_until(lambda: idle(llm), what="the server to abort the closed streams")


# -- %%sgl ------------------------------------------------------------------------------------------

def test_sgl_cell_runs_on_the_server_and_equals_the_cell_in_process(ip, connected, capsys):
    llm = connected
    ip.run_cell_magic("sgl", "--temperature 0 --out remote_state", PROGRAM)
    remote = ip.user_ns["remote_state"]
    assert remote.error() is None and remote["age"].isdigit()
    session.disconnect()
    session.set_llm(llm)                 # the same engine, now in process
    try:
        ip.run_cell_magic("sgl", "--temperature 0 --out local_state", PROGRAM)
    finally:
        session._llm = None              # forget it without shutting the server's engine down
    local = ip.user_ns["local_state"]
    assert remote.text() == local.text()
    assert [remote[k] for k in ("animal", "age")] == [local[k] for k in ("animal", "age")]
    assert remote.stats.num_requests == local.stats.num_requests


def test_sgl_stop_button_is_one_line_and_the_server_frees_the_blocks(ip, connected, slow_steps):
    llm = connected

    def interrupt_when_running():
        wait_until(lambda: llm.stats().num_running == 2, what="both forks to run on the server")
        _thread.interrupt_main()

    threading.Thread(target=interrupt_when_running, daemon=True).start()
    result = ip.run_cell('%%sgl\ns += "Once upon a time"\nforks = s.fork(2)\n'
                         'forks += gen("x", max_tokens=400, ignore_eos=True)\nforks.join()\n')
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert result.error_in_exec._render_traceback_() == ["interrupted: 2 requests cancelled, their KV blocks freed"]
    wait_until(lambda: idle(llm), what="the server to abort the closed streams")


def test_programs_outside_cells_find_the_connected_server(ip, connected):
    import nbinfer as sgl

    @sgl.function
    def hello(s):
        s += "Once upon a time" + sgl.gen("x", max_tokens=4)

    state = hello.run(temperature=0)
    want = connected.generate("Once upon a time", SamplingParams(temperature=0.0, max_tokens=4))[0].outputs[0].text
    assert state["x"] == want


# -- the dashboard ----------------------------------------------------------------------------------

def test_dashboard_frames_come_from_the_servers_metrics(ip, connected, slow_steps):
    from nbinfer.jupyter.dashboard import Dashboard
    from nbinfer.jupyter.publisher import Publisher
    from nbinfer.jupyter.remote_frame import RemoteFrame
    llm = connected
    dashboard = Dashboard()
    publisher = Publisher(dashboard)
    try:
        publisher.tick()
        view = dashboard.view
        assert isinstance(dashboard.frame, RemoteFrame) and "remote" in view.header and "idle" in view.header
        assert view.blocks_total == 0 and view.codes == b"" and "no block map" in view.caption
        assert "not reported by a remote server" in view.memory and "requests one by one" in view.table
        before = dashboard.frame.generation_tokens_total
        remote = session.current_remote()
        h = remote.submit("Once upon a time", SamplingParams(max_tokens=300, ignore_eos=True, temperature=0.0))
        try:
            def running():
                time.sleep(0.55)             # the reader reads /metrics at most twice a second
                publisher.tick()
                return dashboard.frame.num_running == 1
            wait_until(running, what="a frame showing the remote request running")
            assert "1 running · 0 waiting" in dashboard.view.header
            assert dashboard.frame.kv_usage > 0 and "used of 256 blocks" in dashboard.view.occupancy_label
        finally:
            h.cancel()
        wait_until(lambda: idle(llm), what="the server to abort the request")
        time.sleep(0.55)
        publisher.tick()
        assert dashboard.frame.generation_tokens_total > before and not dashboard.frame.busy
        assert dashboard.frame.num_preempted_total == 0 and dashboard.frame.prompt_tokens_total > 0
    finally:
        dashboard.close()


# -- a server that can do less ----------------------------------------------------------------------

def _plain_server(seen):
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "m", "owned_by": "someone"}]})
        if request.url.path == "/v1/completions":
            seen.append(json.loads(request.content))
            body = 'data: {"choices": [{"index": 0, "text": " hi", "finish_reason": "length"}]}\n\ndata: [DONE]\n\n'
            return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
        return httpx.Response(404, json={"error": {"message": "not found"}})
    return httpx.MockTransport(handle)


def test_what_a_plain_server_cannot_do_is_one_line_naming_feature_and_server(ip, capsys):
    seen = []
    session.connect(RemoteLLM("http://stand-in", transport=_plain_server(seen)))
    try:
        ip.run_cell_magic("generate", "--max-tokens 4 --out plain", "Hello")
        assert ip.user_ns["plain"].text == " hi"
        assert one_line_usage_error(ip.run_cell_magic, "generate", "--top-k 5", "Hello") == (
            "%%generate: sampling option(s) top_k is not supported by the openai-compatible server at "
            "http://stand-in (through its openai API)")
        result = ip.run_cell('%%sgl\ns += "Pick:" + select("x", choices=["a", "b"])\n')
        assert "select (it scores each choice by prompt log-probs of token ids) is not supported by the " \
               "openai-compatible server at http://stand-in" in str(result.error_in_exec)
        result = ip.run_cell('%%sgl\ns += "N:" + gen("n", regex="[0-9]+", max_tokens=3)\n')
        assert "constrained output (regex) is not supported by the openai-compatible server" in \
            str(result.error_in_exec)
        assert len(seen) == 1, "a feature the server lacks must not be sent at all"
        assert RemoteMetricsReader(session.current_remote()).frame().problem == "the server has no /metrics"
    finally:
        session.disconnect()
