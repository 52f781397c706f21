"""`%nbinfer serve`: the notebook's own engine over HTTP from a background thread. In an IPython shell:
the official openai client gets the engine's greedy text, its requests show in stats and the status
view tagged "server", `unload` stops the server, `load` moves it to the new model at the same URL,
bad flags and a taken port are one line. In a real kernel: the server answers clients outside the
kernel while a cell is running."""
import re
import socket
import time

import httpx
import pytest

pytest.importorskip("IPython")
openai = pytest.importorskip("openai")
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from nbinfer import SamplingParams  # noqa: E402
from nbinfer.jupyter import serving, session  # noqa: E402
from server_testing import slow_steps, wait_until  # noqa: E402

URL = re.compile(r"at (http://127\.0\.0\.1:\d+)")


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbinfer")
    yield shell
    serving.stop()
    session.unload_llm()


@pytest.fixture
def loaded(ip, llama_dir, capsys):
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 128")
    capsys.readouterr()
    yield session.current_llm()
    serving.stop()


def serve(ip, capsys, flags="--port 0") -> str:
    ip.run_line_magic("nbinfer", f"serve {flags}")
    out = capsys.readouterr().out
    match = URL.search(out)
    assert match, out
    return match.group(1)


def refused(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=5)
    except httpx.ConnectError:
        return True
    return False


def test_serve_answers_the_openai_client_with_the_notebooks_engine(ip, loaded, capsys):
    url = serve(ip, capsys, "--port 0 --api-key k")
    client = openai.OpenAI(base_url=url + "/v1", api_key="k")
    model = client.models.list().data[0].id
    got = client.completions.create(model=model, prompt="Once upon a time", max_tokens=8, temperature=0)
    want = loaded.generate("Once upon a time", SamplingParams(max_tokens=8, temperature=0.0))[0].outputs[0].text
    assert got.choices[0].text == want
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong").models.list()
    ip.run_line_magic("nbinfer", "status")
    assert f"nbinfer: serving the local engine at {url} (API key required)" in capsys.readouterr().out


def test_server_requests_are_tagged_in_stats_and_status(ip, loaded, capsys, monkeypatch):
    slow_steps(loaded, monkeypatch)     # the request must still be running when status looks
    url = serve(ip, capsys)
    with httpx.Client(base_url=url, timeout=60) as http:
        with http.stream("POST", "/v1/completions", json={"prompt": "Once upon a time", "max_tokens": 300,
                                                         "ignore_eos": True, "stream": True}) as r:
            next(r.iter_lines())
            rows = wait_until(lambda: [r for r in loaded.stats().requests.values() if r.origin == "server"],
                              what="the HTTP request in the engine's stats")
            ip.run_line_magic("nbinfer", "status")
            out = capsys.readouterr().out
            assert re.search(rf"{re.escape(rows[0].request_id)} .* · from server", out), out
            from nbinfer.jupyter.frame import ColourSlots, build_frame
            from nbinfer.jupyter.status import requests_table_html
            assert 'class="nbinfer-origin"' in requests_table_html(build_frame(loaded.stats(), ColourSlots()))
    wait_until(lambda: loaded.stats().blocks_used == 0, what="the closed stream's blocks to be freed")


def test_unload_stops_serving_and_load_serves_the_new_model_at_the_same_url(ip, loaded, llama_dir, capsys):
    url = serve(ip, capsys, "--port 0 --api-key k")
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 64")
    out = capsys.readouterr().out
    assert f"nbinfer: serving {llama_dir} at {url} again" in out
    new = session.current_llm()
    assert new is not loaded and serving.current().llm is new
    info = httpx.get(url + "/server_info", headers={"Authorization": "Bearer k"}, timeout=30).json()
    assert info["max_total_num_tokens"] == 64 * new.stats().block_size     # the new engine answers
    ip.run_line_magic("nbinfer", "unload")
    out = capsys.readouterr().out
    assert out.startswith(f"nbinfer: stopped serving at {url}\nnbinfer: unloaded")
    assert serving.current() is None and refused(url)
    ip.run_line_magic("nbinfer", "serve --stop")
    assert capsys.readouterr().out == "nbinfer: not serving\n"


def test_another_engine_set_from_code_stops_the_server(ip, loaded, llama_dir, capsys):
    url = serve(ip, capsys)
    from nbinfer import LLM
    session.set_llm(LLM(llama_dir, num_kv_blocks=32))
    assert serving.current() is None and refused(url)


def test_serve_errors_are_one_line(ip, loaded, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(UsageError) as e:
            ip.run_line_magic("nbinfer", f"serve --port {port}")
    assert str(e.value).startswith(f"%nbinfer serve: cannot listen on 127.0.0.1:{port}:") and "\n" not in str(e.value)
    with pytest.raises(UsageError, match="--port must be >= 0"):
        ip.run_line_magic("nbinfer", "serve --port -1")
    with pytest.raises(UsageError, match=r"unrecognized arguments: --prot 9 \(did you mean --port\?\)"):
        ip.run_line_magic("nbinfer", "serve --prot 9")


def test_stop_reports_what_it_stopped(ip, loaded, capsys):
    url = serve(ip, capsys)
    ip.run_line_magic("nbinfer", "serve --stop")
    assert capsys.readouterr().out == f"nbinfer: stopped serving at {url}\n"
    assert refused(url)


def test_serving_again_says_the_old_url_closed(ip, loaded, capsys):
    first = serve(ip, capsys)
    ip.run_line_magic("nbinfer", "serve --port 0")
    out = capsys.readouterr().out
    assert out.startswith(f"nbinfer: stopped serving at {first}\n") and URL.search(out.splitlines()[1]), out
    assert refused(first)


# -- in a real kernel -------------------------------------------------------------------------------

def test_serve_inside_a_kernel_answers_outside_clients_while_a_cell_runs(tmp_path):
    pytest.importorskip("jupyter_client")
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        def run(code, timeout=300):
            out = []
            reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: out.append(m))
            assert reply["content"]["status"] == "ok", reply["content"]
            return "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")

        run("%load_ext nbinfer")
        text = run("%nbinfer serve --port 0")
        url = URL.search(text).group(1)
        # a cell that keeps the kernel busy, generating on the same engine, until the test is done
        done = tmp_path / "done"
        msg_id = kc.execute(
            "import pathlib, time\nfrom nbinfer import SamplingParams\nfrom nbinfer.jupyter import session\n"
            "h = session.get_llm().submit('Once upon a time', SamplingParams(max_tokens=200, ignore_eos=True))\n"
            f"while not pathlib.Path({str(done)!r}).exists():\n    time.sleep(0.05)\n"
            "cell_text = h.result().outputs[0].text\n")
        client = openai.OpenAI(base_url=url + "/v1", api_key="none")
        seen_busy, deadline = False, time.monotonic() + 120
        while time.monotonic() < deadline and not seen_busy:
            metrics = httpx.get(url + "/metrics", timeout=30).text
            seen_busy = re.search(r"^vllm:prompt_tokens_total\{[^}]*\} [1-9]", metrics, re.M) is not None
        assert seen_busy, "the cell's request never showed in the server's /metrics"
        answer = client.completions.create(model=client.models.list().data[0].id, prompt="One day",
                                           max_tokens=4, temperature=0)
        assert answer.choices[0].text and answer.usage.completion_tokens >= 1
        assert not kc.shell_channel.msg_ready(), "the cell was to be still running"
        done.write_text("")
        reply = kc.get_shell_msg(timeout=300)
        assert reply["parent_header"].get("msg_id") == msg_id and reply["content"]["status"] == "ok"
        assert run("print(len(cell_text) > 0)").strip() == "True"
        assert "stopped serving at " + url in run("%nbinfer serve --stop")
        assert refused(url)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
