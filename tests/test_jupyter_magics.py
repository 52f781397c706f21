"""%load_ext nbinfer, %nbinfer and %%generate in IPython's InteractiveShell: every subcommand, every
flag, every bad-flag path (one-line UsageError), streaming through display-id updates, interrupt."""
import _thread
import json
import shutil
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("IPython")
from IPython.core.displaypub import CapturingDisplayPublisher  # noqa: E402
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from nbinfer import LLM, SamplingParams  # noqa: E402
from nbinfer.jupyter import generation as generation_mod  # noqa: E402
from nbinfer.jupyter import session  # noqa: E402


@pytest.fixture(scope="module")
def ip():
    shell = InteractiveShell.instance()           # shared with other test modules in this process
    before = set(shell.user_ns)
    shell.run_line_magic("load_ext", "nbinfer")
    yield shell
    session.unload_llm()
    for name in set(shell.user_ns) - before:      # leave the shared namespace as we found it
        del shell.user_ns[name]


@pytest.fixture
def loaded(ip, llama_dir):
    """The tiny llama as the session engine (loaded once, reloaded if a test unloaded it)."""
    llm = session.current_llm()
    if llm is None or llm.stats().model != str(llama_dir):
        ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 128")
    return session.current_llm()


def usage_error(fn, *args) -> str:
    with pytest.raises(UsageError) as e:
        fn(*args)
    msg = str(e.value)
    assert "\n" not in msg, f"not one line: {msg!r}"
    return msg


def _plain(text: str) -> str:
    # random-weight models emit control characters; text/plain rendering breaks lines at \r, \x0c, ...
    return "\n".join(text.splitlines())


def gen(ip, line, body):
    return ip.run_cell_magic("generate", line, body)


# -- the extension ----------------------------------------------------------------------------------

def test_import_nbinfer_does_not_import_ipython():
    code = "import sys, nbinfer; assert 'IPython' not in sys.modules; assert callable(nbinfer.load_ipython_extension)"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_load_ext_prints_nothing(capfd):
    shell = InteractiveShell.instance()
    if "nbinfer" in shell.extension_manager.loaded:   # other tests loaded it in this shared shell
        shell.run_line_magic("unload_ext", "nbinfer")
    capfd.readouterr()
    shell.run_line_magic("load_ext", "nbinfer")
    shell.run_line_magic("reload_ext", "nbinfer")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert "generate" in shell.magics_manager.magics["cell"]
    assert "nbinfer" in shell.magics_manager.magics["line"]


def test_help_for_both_magics(ip, capsys):
    ip.run_cell("%nbinfer?")
    out = capsys.readouterr().out
    for word in ("load", "status", "dashboard", "unload", "--num-kv-blocks", "--block-size", "--dtype"):
        assert word in out
    ip.run_cell("%%generate?")
    out = capsys.readouterr().out
    for flag in ("--max-tokens", "--temperature", "--top-p", "--top-k", "--seed", "--stop", "-n", "--chat",
                 "--system", "--out", "--no-stream", "--background", "---"):
        assert flag in out


def test_sgl_magic_is_registered_when_present(monkeypatch):
    import types
    calls = []
    fake = types.ModuleType("nbinfer.jupyter.sgl_magic")
    fake.register = calls.append
    monkeypatch.setitem(sys.modules, "nbinfer.jupyter.sgl_magic", fake)
    shell = InteractiveShell.instance()
    from nbinfer.jupyter import load_ipython_extension
    load_ipython_extension(shell)
    assert calls == [shell]


def test_subcommands_can_be_added(ip, capsys):
    from nbinfer.jupyter import commands

    def add_arguments(p):
        p.add_argument("--times", type=int, default=1)

    @commands.subcommand("echo-test", "print hello", add_arguments)
    def echo(args, shell):
        print("hello " * args.times)

    try:
        ip.run_line_magic("nbinfer", "echo-test --times 2")
        assert capsys.readouterr().out.strip() == "hello hello"
        assert "echo-test" in ip.find_line_magic("nbinfer").__doc__
        msg = usage_error(ip.run_line_magic, "nbinfer", "echo-test --times x")
        assert msg.startswith("%nbinfer echo-test:") and "invalid int value: 'x'" in msg
    finally:
        commands.SUBCOMMANDS.pop("echo-test")
        commands.refresh_help()


# -- %nbinfer ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ("", "give a subcommand"),
    ("frob", "invalid choice: 'frob'"),
    ("load --dtype int8", "argument --dtype: invalid choice"),
    # ranges are the engine config's own checks, named by flag
    ("load --block-size 0", "--block-size must be a positive integer, got 0"),
    ("load --block-size x", "argument --block-size: expected an integer, got 'x'"),
    ("load --num-kv-blocks -3", "--num-kv-blocks must be a positive integer, got -3"),
    ("load --gpu-memory-utilization 1.5", "--gpu-memory-utilization must be in (0, 1], got 1.5"),
    ("load --gpu-memory-utilization nan", "--gpu-memory-utilization must be in (0, 1], got nan"),
    ("load --device tpu", "argument --device: invalid choice: 'tpu' (choose from auto, cpu, cuda"),
    ("load --attention-backend cuda", "--attention-backend: invalid choice"),
    ("load --num-kv", "unrecognized arguments: --num-kv"),       # no abbreviations
    ("load --bogus", "unrecognized arguments: --bogus"),
    ("load a b", "unrecognized arguments: b"),
    ("load /nonexistent/model", "model path '/nonexistent/model' does not exist"),
    ("load 'unbalanced", "No closing quotation"),
    ("status --verbose", "unrecognized arguments: --verbose"),
    ("dashboard --interval 0.01", "--interval must be at least 0.1"),
    ("dashboard --interval x", "invalid float value"),
])
def test_nbinfer_bad_flags(ip, line, expected):
    msg = usage_error(ip.run_line_magic, "nbinfer", line)
    assert expected in msg, msg
    assert msg.startswith("%nbinfer")


def test_load_status_unload_and_swap(ip, model_dir, capsys):
    llama, qwen = model_dir("llama"), model_dir("qwen2")
    ip.run_line_magic("nbinfer", f"load {llama} --num-kv-blocks 64 --block-size 8")
    out = capsys.readouterr().out
    assert f"loaded {llama}" in out and "64 blocks × 8 tokens" in out
    first = session.current_llm()
    assert first.stats().blocks_total == 64

    ip.run_line_magic("nbinfer", "status")
    out = capsys.readouterr().out
    assert str(llama) in out and "64 blocks × 8 tokens" in out and "0 running" in out

    # another model without restarting: the first engine is shut down before the second loads
    ip.run_line_magic("nbinfer", f"load {qwen} --num-kv-blocks 32 --dtype float32")
    out = capsys.readouterr().out
    assert f"unloaded {llama}" in out and f"loaded {qwen}" in out
    assert first.engine is None
    assert session.current_llm().stats().model == str(qwen)
    gen(ip, "--max-tokens 4 --out r", "hello")
    assert len(ip.user_ns["r"].outputs[0].outputs[0].token_ids) <= 4

    ip.run_line_magic("nbinfer", "unload")
    assert "unloaded" in capsys.readouterr().out
    assert session.current_llm() is None
    ip.run_line_magic("nbinfer", "unload")
    assert "no model is loaded" in capsys.readouterr().out
    ip.run_line_magic("nbinfer", "status")
    assert "no model is loaded" in capsys.readouterr().out


def test_failed_load_is_one_line_and_leaves_nothing_loaded(ip, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}))
    msg = usage_error(ip.run_line_magic, "nbinfer", f"load {tmp_path}")
    assert msg.startswith("%nbinfer load:")
    assert session.current_llm() is None


def test_a_bad_option_keeps_the_loaded_model(ip, loaded):
    """Options are checked as LLM(...) checks them before anything is unloaded: a typo must not
    cost the model that is loaded."""
    for line in ("load --device tpu", "load --block-size 0", "load --max-num-seqs -1", "load --dtype int8"):
        usage_error(ip.run_line_magic, "nbinfer", line)
        assert session.current_llm() is loaded and loaded.engine is not None


def test_a_device_or_backend_this_machine_lacks_keeps_the_loaded_model(ip, loaded, monkeypatch):
    """Refused before the unload too: what this machine cannot run needs no model read to know."""
    import torch

    from nbinfer.engine.attention import triton_backend
    monkeypatch.setattr(triton_backend, "interpreted", lambda kernel: False)   # as without TRITON_INTERPRET
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for line, expected in (("load --device cuda", "CUDA is not available here"),
                           ("load --attention-backend triton", "needs a CUDA device"),
                           ("load --device cuda:1", "CUDA is not available here")):
        msg = usage_error(ip.run_line_magic, "nbinfer", line)
        assert msg.startswith("%nbinfer load: --") and expected in msg, msg
        assert session.current_llm() is loaded and loaded.engine is not None


@pytest.mark.parametrize("corrupt", [False, True])
def test_any_load_failure_is_one_line_and_says_the_old_model_was_unloaded(ip, loaded, llama_dir, tmp_path,
                                                                          corrupt):
    model = tmp_path / "model"
    expected = f"model path '{model}' does not exist"
    if corrupt:
        # not a ValueError: safetensors' own error type, which printed a full traceback before
        shutil.copytree(llama_dir, model)
        (model / "model.safetensors").write_bytes(b"garbage" * 10)
        expected = "SafetensorError: Error while deserializing header"
    msg = usage_error(ip.run_line_magic, "nbinfer", f"load {model}")
    assert msg.startswith("%nbinfer load: ") and expected in msg, msg
    assert f"(the previous model, {llama_dir} (float32, cpu), was unloaded)" in msg, msg
    assert session.current_llm() is None and loaded.engine is None


def test_an_unexpected_load_error_is_one_line_too(ip, monkeypatch):
    from nbinfer import llm

    def broken(**kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered\nCompile with TORCH_USE_CUDA_DSA")

    session.unload_llm()
    monkeypatch.setattr(llm, "LLM", broken)
    msg = usage_error(ip.run_line_magic, "nbinfer", "load")
    assert msg == ("%nbinfer load: RuntimeError: CUDA error: device-side assert triggered Compile with "
                   "TORCH_USE_CUDA_DSA"), msg           # nothing was loaded, so nothing was unloaded


def test_get_llm_autoloads_the_default_model(ip, capsys):
    session.unload_llm()
    with pytest.raises(session.NoModelLoaded, match="nbinfer load"):
        session.get_llm(autoload=False)
    llm = session.get_llm()
    assert "loading the bundled default model" in capsys.readouterr().out
    assert llm.stats().model == "default" and session.get_llm() is llm
    session.unload_llm()


def test_set_llm_shares_an_engine_built_elsewhere(ip, llama_dir):
    llm = LLM(llama_dir, num_kv_blocks=32)
    session.set_llm(llm)
    assert session.get_llm() is llm
    gen(ip, "--max-tokens 3 --out r", "hi")
    assert ip.user_ns["r"].done
    session.unload_llm()
    assert llm.engine is None


# -- %%generate -------------------------------------------------------------------------------------

def test_generate_binds_result_and_matches_the_api(ip, loaded):
    gen(ip, "--max-tokens 12 --temperature 0 --out r", "The quick brown fox\n")
    r = ip.user_ns["r"]
    ref = loaded.generate("The quick brown fox", SamplingParams(temperature=0, max_tokens=12))[0]
    assert r.done and r.texts == [r.text]
    assert r.outputs[0].outputs[0].token_ids == ref.outputs[0].token_ids, (r.outputs, ref)
    assert r.text == ref.outputs[0].text
    assert r.outputs[0].outputs[0].token_ids == ref.outputs[0].token_ids
    assert r.outputs[0].prompt == "The quick brown fox"           # surrounding whitespace stripped
    html = r._repr_html_()
    assert "The quick brown fox" in html and "tokens in" in html
    assert "The quick brown fox" in repr(r)


def test_interpolation_and_batch(ip, loaded):
    ip.user_ns["topic"] = "blocks"
    ip.user_ns["cfg"] = type("Cfg", (), {"name": "cache"})()
    body = "A paged {topic} of {cfg.name} and {missing} and {\"json\": {\"a\": 1}}\n---\nSecond {topic}\n---\nthird"
    gen(ip, "--max-tokens 5 --seed 7 --out r", body)
    r = ip.user_ns["r"]
    assert [o.prompt for o in r.outputs] == [
        'A paged blocks of cache and {missing} and {"json": {"a": 1}}', "Second blocks", "third"]
    assert len(r.texts) == 3 and r.text == r.texts[0]


def test_a_batch_is_read_by_one_thread_in_engine_order(ip, loaded, monkeypatch):
    # 6 prompts x n=2: one reader over the merged stream, not a thread per request
    import threading
    started = []
    real_start = threading.Thread.start

    def start(self):
        started.append(self.name)
        return real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    gen(ip, "--max-tokens 6 --temperature 0 -n 2 --no-stream --out r", "\n---\n".join(f"Prompt {i}" for i in range(6)))
    monkeypatch.undo()
    r = ip.user_ns["r"]
    assert [n for n in started if n.startswith("nbinfer-generate")] == [started[0]] and len(started) == 1
    ref = loaded.generate([f"Prompt {i}" for i in range(6)], SamplingParams(temperature=0, max_tokens=6, n=2))
    assert r.texts == [c.text for o in ref for c in o.outputs]


def test_separator_must_be_exactly_three_dashes(ip, loaded):
    gen(ip, "--max-tokens 2 --out r", "one\n---\ntwo\n----\n ---\nstill two\n--- \nthree")
    assert [o.prompt for o in ip.user_ns["r"].outputs] == ["one", "two\n----\n ---\nstill two", "three"]


def test_n_seed_and_determinism(ip, loaded):
    gen(ip, "-n 3 --max-tokens 8 --temperature 1.0 --seed 11 --out a", "Once upon a time")
    gen(ip, "-n 3 --max-tokens 8 --temperature 1.0 --seed 11 --out b", "Once upon a time")
    a, b = ip.user_ns["a"], ip.user_ns["b"]
    assert len(a.texts) == 3 and a.texts == b.texts
    assert len(a.outputs) == 1 and len(a.outputs[0].outputs) == 3
    assert len(set(a.texts)) > 1                                   # per-sample seeds differ


def test_sampling_flags_reach_the_engine(ip, loaded, monkeypatch):
    seen = []
    real_submit = loaded.submit

    def spy(prompt, params=None, **kw):
        seen.append(params)
        return real_submit(prompt, params, **kw)

    monkeypatch.setattr(loaded, "submit", spy)
    gen(ip, '--max-tokens 7 --temperature 0.5 --top-p 0.9 --top-k 5 --seed 3 --stop "\\n" --stop END', "x")
    p = seen[0]
    assert (p.max_tokens, p.temperature, p.top_p, p.top_k, p.seed) == (7, 0.5, 0.9, 5, 3)
    assert p.stop == ["\n", "END"]


def test_defaults_come_from_generation_config(ip, llama_dir, tmp_path, monkeypatch):
    model = tmp_path / "with-defaults"
    shutil.copytree(llama_dir, model)
    (model / "generation_config.json").write_text(json.dumps({"temperature": 0.3, "top_p": 0.5, "top_k": 7,
                                                              "do_sample": True}))
    ip.run_line_magic("nbinfer", f"load {model} --num-kv-blocks 16")
    llm = session.current_llm()
    seen = []
    real_submit = llm.submit
    monkeypatch.setattr(llm, "submit", lambda prompt, params=None, **kw: seen.append(params) or real_submit(prompt, params, **kw))
    gen(ip, "--max-tokens 2", "x")
    gen(ip, "--max-tokens 2 --temperature 0.9 --top-k -1", "x")
    assert (seen[0].temperature, seen[0].top_p, seen[0].top_k) == (0.3, 0.5, 7)
    assert (seen[1].temperature, seen[1].top_p, seen[1].top_k) == (0.9, 0.5, -1)
    session.unload_llm()


def test_chat_and_system_use_the_template(ip, loaded, monkeypatch):
    seen = []
    real_submit = loaded.submit
    monkeypatch.setattr(loaded, "submit", lambda prompt, params=None, **kw: seen.append(prompt) or real_submit(prompt, params, **kw))
    gen(ip, '--chat --max-tokens 4 --out r', "Hi there")
    gen(ip, '--system "Be brief." --max-tokens 4 --out s', "Hello")
    assert seen[0]["prompt"].startswith("<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n")
    assert seen[1]["prompt"].startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello")
    assert ip.user_ns["s"].chat and "Be brief." in ip.user_ns["s"]._repr_html_()


def test_chat_without_template_is_a_usage_error(ip, llama_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(llama_dir, bare)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in bare.glob("chat_template*"):
        f.unlink()
    ip.run_line_magic("nbinfer", f"load {bare} --num-kv-blocks 16")
    msg = usage_error(gen, ip, "--chat", "hello")
    assert "no chat template" in msg and msg.startswith("%%generate --chat")
    session.unload_llm()


@pytest.mark.parametrize("line, body, expected", [
    ("--max-tokens 0", "x", "--max-tokens must be >= 1"),
    ("--max-tokens many", "x", "argument --max-tokens: expected an integer, got 'many'"),
    ("--temperature -1", "x", "--temperature must be >= 0.0"),
    ("--temperature hot", "x", "argument --temperature: expected a number"),
    ("--temperature nan", "x", "--temperature must be a finite number, got 'nan'"),
    ("--top-p inf", "x", "--top-p must be in [0.0, 1.0], got 'inf'"),
    ("--top-p 1.5", "x", "--top-p must be in [0.0, 1.0]"),
    ("--top-k 0", "x", "SamplingParams.top_k must be -1 (disabled) or >= 1"),
    ("--top-k x", "x", "argument --top-k: expected an integer"),
    ("--seed x", "x", "argument --seed: invalid int value"),
    ("-n 0", "x", "-n must be >= 1"),
    ("--out 1abc", "x", "'1abc' is not a valid Python variable name"),
    ("--out", "x", "argument --out: expected one argument"),
    ("--system", "x", "argument --system: expected one argument"),
    ("--bogus", "x", "unrecognized arguments: --bogus"),
    ("--max 5", "x", "unrecognized arguments"),                      # no abbreviations
    ("stray", "x", "unrecognized arguments: stray"),
    ('--stop "a', "x", "No closing quotation"),
    ("--background --no-stream", "x", "cannot be combined with --no-stream"),
    ("", "   \n", "the cell body is empty"),
    ("", "one\n---\n\n---\nthree", "prompt 2 of 3 is empty"),
    ("", "a\n---\n" + "word " * 600, "prompt 2: prompt has"),       # longer than max_model_len
])
def test_generate_bad_flags(ip, loaded, line, body, expected):
    msg = usage_error(gen, ip, line, body)
    assert msg.startswith("%%generate"), msg
    assert expected in msg, msg
    stats = loaded.stats()
    assert stats.num_running == 0 and stats.num_waiting == 0     # nothing was left running


def test_interrupt_between_submits_cancels_what_was_submitted(ip, loaded, monkeypatch):
    """Ctrl-C after the 1st of 3 prompts was submitted: nothing is attached to that request yet, so
    the magic itself must abort it (and free its blocks) before the interrupt propagates."""
    submitted = []
    real_submit = loaded.submit

    def submit(*args, **kwargs):
        if submitted:
            raise KeyboardInterrupt
        submitted.append(real_submit(*args, **kwargs))
        return submitted[-1]

    monkeypatch.setattr(loaded, "submit", submit)
    with pytest.raises(KeyboardInterrupt) as stopped:
        gen(ip, "--max-tokens 2000", "Once upon a time\n---\nThe quick brown fox\n---\nA paged KV cache")
    assert stopped.value._render_traceback_() == ["interrupted: 1 request cancelled, its KV blocks freed"]
    assert len(submitted) == 1 and submitted[0].done()
    assert submitted[0].result().outputs[0].finish_reason == "abort"
    s = loaded.stats()
    assert s.blocks_used == 0 and s.num_running == 0 and s.num_waiting == 0


def test_no_stream_displays_once(ip, loaded, monkeypatch):
    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    monkeypatch.setattr(generation_mod, "in_kernel", lambda: True)
    gen(ip, "--no-stream --max-tokens 20 --out r", "The quick brown fox")
    assert len(pub.outputs) == 1 and not pub.outputs[0]["update"]
    assert _plain(ip.user_ns["r"].text) in _plain(pub.outputs[0]["data"]["text/plain"])


def test_streams_through_display_id_updates(ip, loaded, monkeypatch):
    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    monkeypatch.setattr(generation_mod, "in_kernel", lambda: True)
    monkeypatch.setattr(generation_mod, "REFRESH_S", 0.0)          # every delta repaints: see them all
    gen(ip, "--max-tokens 40 --temperature 0 --out r", "A paged KV cache")
    r = ip.user_ns["r"]
    first, *updates = pub.outputs
    display_id = first["transient"]["display_id"]
    assert not first["update"] and updates and all(u["update"] for u in updates)
    assert all(u["transient"]["display_id"] == display_id for u in updates)
    final = updates[-1]["data"]
    assert _plain(r.text) in _plain(final["text/plain"]) and "tokens in" in final["text/plain"]
    assert "text/html" in final
    # the text grew over the updates: it really streamed
    lengths = [len(u["data"]["text/plain"]) for u in [first] + updates]
    assert len(set(lengths)) >= 3


def test_refresh_is_throttled(ip, loaded, monkeypatch):
    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    monkeypatch.setattr(generation_mod, "in_kernel", lambda: True)
    started = time.monotonic()
    gen(ip, "--max-tokens 200 -n 4 --seed 1 --out r", "Once upon a time")
    elapsed = time.monotonic() - started
    updates = [o for o in pub.outputs if o["update"]]
    assert len(updates) <= elapsed / generation_mod.REFRESH_S + 2
    sent = sum(len(u["data"]["text/plain"]) + len(u["data"]["text/html"]) for u in updates)
    assert sent <= elapsed * generation_mod.UPDATE_BYTES_PER_S * 1.5 + 20_000


def test_terminal_shell_streams_plain_text(ip, loaded, capsys):
    gen(ip, "--max-tokens 10 --temperature 0 --out r", "The quick brown fox")
    out = capsys.readouterr().out
    assert out.startswith("The quick brown fox" + ip.user_ns["r"].text)
    assert "tokens in" in out


def test_background_returns_at_once_and_finishes(ip, loaded, monkeypatch):
    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    started = time.monotonic()
    gen(ip, "--background --max-tokens 300 --seed 2 --out bg", "Once upon a time")
    returned = time.monotonic() - started
    bg = ip.user_ns["bg"]
    assert returned < 1.0
    assert bg.wait(timeout=60).done
    time.sleep(0.3)                                                # the last repaint
    assert len(bg.outputs) == 1
    display_id = pub.outputs[0]["transient"]["display_id"]
    assert pub.outputs[-1]["update"] and pub.outputs[-1]["transient"]["display_id"] == display_id
    assert _plain(bg.text) in _plain(pub.outputs[-1]["data"]["text/plain"])


def test_background_cancel_frees_blocks(ip, loaded, monkeypatch):
    pub = CapturingDisplayPublisher()     # the background repaint lands here, not on the terminal
    monkeypatch.setattr(ip, "display_pub", pub)
    gen(ip, "--background --max-tokens 400 --out bg", "Once upon a time\n---\nA paged KV cache")
    bg = ip.user_ns["bg"]
    bg.cancel()
    assert bg.done
    time.sleep(0.3)                       # the last repaint, before monkeypatch restores display_pub
    assert "finished: abort" in pub.outputs[-1]["data"]["text/plain"]
    assert {c.finish_reason for o in bg.outputs for c in o.outputs} <= {"abort", "stop", "length"}
    s = loaded.stats()
    assert s.blocks_used == 0 and s.num_running == 0 and not s.requests


def test_unload_during_background_generation_reports_it(ip, loaded, llama_dir, monkeypatch):
    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    gen(ip, "--background --max-tokens 500 --out bg", "Once upon a time")
    bg = ip.user_ns["bg"]
    session.unload_llm()
    bg.wait(timeout=30)
    assert bg.done and (bg.error is None or "shut down" in bg.error)
    time.sleep(0.3)                       # the last repaint says so too
    if bg.error is not None:
        assert "shut down" in pub.outputs[-1]["data"]["text/plain"]


def test_stop_button_cancels_frees_and_engine_keeps_running(ip, loaded):
    """KeyboardInterrupt (Jupyter's stop button) during streaming: requests aborted, blocks back in
    the pool, the exception propagates, and the next cell runs on the same engine."""
    generation = {}

    def interrupt_when_streaming():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            g = ip.user_ns.get("stopme")
            if g is not None and g is not generation.get("old") and any(g.texts):
                _thread.interrupt_main()
                return
            time.sleep(0.005)

    generation["old"] = ip.user_ns.get("stopme")
    threading.Thread(target=interrupt_when_streaming, daemon=True).start()
    with pytest.raises(KeyboardInterrupt) as stopped:
        gen(ip, "--max-tokens 2000 -n 2 --out stopme", "Once upon a time\n---\nThe quick brown fox")
    # what IPython shows instead of a traceback (the kernel test checks it reaches the notebook)
    assert stopped.value._render_traceback_() == ["interrupted: 2 requests cancelled, their KV blocks freed"]
    g = ip.user_ns["stopme"]
    assert g.interrupted and g.done
    assert any(c.finish_reason == "abort" for o in g.outputs for c in o.outputs)
    s = loaded.stats()
    assert s.blocks_used == 0 and s.num_running == 0 and s.num_waiting == 0
    assert session.current_llm() is loaded
    gen(ip, "--max-tokens 3 --out after", "still alive")
    assert ip.user_ns["after"].done and ip.user_ns["after"].error is None


def _interrupt_when(condition, timeout=30.0):
    """Ctrl-C in the main thread (what the stop button does) once condition() holds."""
    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                _thread.interrupt_main()
                return
            time.sleep(0.005)
    threading.Thread(target=watch, daemon=True).start()


def test_stop_button_shows_one_line_and_no_nbinfer_frames(ip, loaded, capsys):
    """Through IPython's own error display, as a notebook shows it: one line, the cell in error."""
    ip.user_ns.pop("oneline", None)
    _interrupt_when(lambda: "oneline" in ip.user_ns and any(ip.user_ns["oneline"].texts))
    result = ip.run_cell("%%generate --max-tokens 2000 --out oneline\nOnce upon a time")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)       # the cell failed: Run All stops
    out = capsys.readouterr().out
    assert out.rstrip().endswith("\ninterrupted: 1 request cancelled, its KV blocks freed"), out
    assert "Traceback" not in out and "generation.py" not in out and "magics.py" not in out
    assert loaded.stats().blocks_used == 0


def test_a_click_after_the_run_finished_claims_nothing(ip, loaded, monkeypatch):
    """The stop button pressed while the cell paints its last frame: every request had finished, so
    nothing was cancelled and the result is not marked interrupted; the cell still stops (Run All)."""
    real_follow = generation_mod.LiveDisplay.follow

    def follow_then_click(self):
        real_follow(self)
        assert self.generation.done
        raise KeyboardInterrupt

    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    monkeypatch.setattr(generation_mod, "in_kernel", lambda: True)
    monkeypatch.setattr(generation_mod.LiveDisplay, "follow", follow_then_click)
    with pytest.raises(KeyboardInterrupt) as stopped:
        gen(ip, "--max-tokens 5 --out late", "Once upon a time")
    assert stopped.value._render_traceback_() == [
        "interrupted after the generation had finished; nothing was cancelled"]
    late = ip.user_ns["late"]
    assert not late.interrupted and "finished: length" in late._status_line()
    assert "finished: length" in pub.outputs[-1]["data"]["text/plain"]
