"""Starting and stopping servers: `nbinfer serve` as a command, and serve_in_thread() next to a live
engine (what `%nbinfer serve` will use): in-process work goes on, server requests are tagged
"server" in stats(), and stop() leaves the engine running and the port free."""
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from nbinfer import LLM, SamplingParams
from nbinfer.server import serve_in_thread
from server_testing import slow_steps, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_in_thread_beside_in_process_work_then_stop(llama_dir, monkeypatch):
    llm = LLM(llama_dir, num_kv_blocks=128)
    slow_steps(llm, monkeypatch, 0.005)     # both 200-token requests still run when the test looks
    try:
        server = serve_in_thread(llm, port=0)
        assert server.url.startswith("http://127.0.0.1:") and server.running
        local = llm.submit("The quick brown fox", SamplingParams(max_tokens=200, ignore_eos=True))
        with httpx.Client(base_url=server.url, timeout=60) as http:
            with http.stream("POST", "/v1/completions", json={"prompt": "The quick", "max_tokens": 200,
                                                              "ignore_eos": True, "stream": True}) as s:
                lines = s.iter_lines()
                next(line for line in lines if line.startswith("data:"))
                origins = wait_until(lambda: {r.origin for r in llm.stats().requests.values()} >= {"api", "server"}
                                     and {r.origin for r in llm.stats().requests.values()}, what="both requests")
                assert origins == {"api", "server"}
                rest = [line for line in lines if line.startswith("data:")]
            assert rest[-1] == "data: [DONE]"
        assert len(local.result().outputs[0].token_ids) == 200
        port = server.port
        server.stop()
        assert not server.running
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        # the engine still works, and the port can be served again
        assert llm.generate("The quick", SamplingParams(max_tokens=3))[0].outputs[0].token_ids
        again = serve_in_thread(llm, port=port)
        assert httpx.get(again.url + "/health").status_code == 200
        again.stop()
    finally:
        llm.shutdown()


def test_a_port_in_use_is_a_clear_error(llama_dir):
    llm = LLM(llama_dir, num_kv_blocks=64)
    try:
        with serve_in_thread(llm, port=0) as first:
            with pytest.raises(ValueError, match=f"cannot listen on 127.0.0.1:{first.port}"):
                serve_in_thread(llm, port=first.port)
    finally:
        llm.shutdown()


def test_nbinfer_serve_command_serves_and_stops_on_sigterm(llama_dir):
    port = _free_port()
    cmd = [sys.executable, "-m", "nbinfer", "serve", str(llama_dir), "--port", str(port), "--api-key", "k",
           "--num-kv-blocks", "64", "--max-model-len", "256", "--no-enable-prefix-caching", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def up():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read()
                return False
        wait_until(up, timeout=120, what="nbinfer serve to start")
        auth = {"Authorization": "Bearer k"}
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=auth).json()
        assert models["data"][0]["max_model_len"] == 256
        info = httpx.get(f"http://127.0.0.1:{port}/server_info", headers=auth).json()
        assert info["enable_prefix_caching"] is False and info["max_total_num_tokens"] == 64 * 16
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"listening on http://127.0.0.1:{port}" in out


def test_nbinfer_serve_bad_options_are_one_line():
    r = subprocess.run([sys.executable, "-m", "nbinfer", "serve", "--block-size", "-3", "--port", "1"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "block_size" in r.stderr


def test_a_server_whose_engine_was_shut_down_answers_503(llama_dir):
    llm = LLM(llama_dir, num_kv_blocks=64)
    with serve_in_thread(llm, port=0) as server:
        llm.shutdown()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            assert http.get("/health").status_code == 503
            for path, body in [("/v1/completions", {"prompt": "a", "max_tokens": 2}),
                               ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}]}),
                               ("/generate", {"text": "a"}), ("/tokenize", {"prompt": "a"})]:
                r = http.post(path, json=body)
                assert r.status_code == 503, (path, r.text)
                assert "not running" in r.json()["error"]["message"]
