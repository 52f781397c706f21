"""%%sgl in an IPython InteractiveShell: program cells, definition cells (the seed's complex_dialog
pasted as is), flags, the engine it picks, one-line errors, Ctrl-C."""
import _thread
import threading
import time
import types

import pytest

pytest.importorskip("IPython")

import nbinfer as sgl  # noqa: E402
from nbinfer import LLM, SamplingParams  # noqa: E402
from nbinfer.jupyter import session, sgl_magic  # noqa: E402

COMPLEX_DIALOG = '''@instruct
def complex_dialog(s):
    s += "请解释量子计算的基本原理:"
    s.generate(name="first_response", max_tokens=300)
    s.if_(s["first_response"].contains("不知道") | s["first_response"].contains("不确定")):
        s += "\\n请提供更详细的信息:"
        s.generate(name="second_response", max_tokens=300)
        s.return_(s["second_response"])
    s.else_():
        s.return_(s["first_response"])
'''


@pytest.fixture(scope="module")
def shell():
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    sgl_magic.register(ip)
    return ip


@pytest.fixture
def engine(shared_llm):
    """The notebook's engine for this test (what `%nbinfer load` would set)."""
    session.set_llm(shared_llm)
    yield shared_llm
    session._llm = None         # forget it without shutting the shared engine down
    sgl.set_default_backend(None)


def cell(shell, line, body):
    return shell.run_cell_magic("sgl", line, body)


def test_the_seeds_complex_dialog_pasted_as_a_cell(shell, engine, capsys):
    assert cell(shell, "--show-ir", COMPLEX_DIALOG) is None
    listing = capsys.readouterr().out
    assert "program complex_dialog(s)   # cell" in listing
    # numbered as the notebook shows the cell: line 1 is `%%sgl`
    assert "    5   gen      first_response  max_tokens=300" in listing
    assert "    6   if       s['first_response'].contains('不知道') | s['first_response'].contains('不确定')" \
        in listing
    assert "   11     return   s['first_response']" in listing
    program = shell.user_ns["complex_dialog"]
    assert isinstance(program, sgl.SglFunction) and "instruct" not in shell.user_ns

    result = program.run()               # on the notebook's engine
    assert result.text.startswith("请解释量子计算的基本原理:" + result["first_response"])
    unsure = "不知道" in result["first_response"] or "不确定" in result["first_response"]
    assert result.ret_value == (result["second_response"] if unsure else result["first_response"])


def test_complex_dialog_takes_each_branch(shell):
    from test_sgl_runtime import ScriptedBackend
    cell(shell, "", COMPLEX_DIALOG)
    program = shell.user_ns["complex_dialog"]
    prompt = "请解释量子计算的基本原理:"
    unsure = ScriptedBackend({prompt: "我不确定。", prompt + "我不确定。\n请提供更详细的信息:": "量子比特可以叠加。"})
    result = program.run(backend=unsure)
    assert result.ret_value == "量子比特可以叠加。" and result.text.endswith("\n请提供更详细的信息:量子比特可以叠加。")
    sure = ScriptedBackend({prompt: "量子比特可以处于叠加态。"})
    result = program.run(backend=sure)
    assert result.ret_value == "量子比特可以处于叠加态。" and "second_response" not in result


def test_program_cell_streams_binds_and_equals_llm_generate(shell, engine, capsys):
    shell.user_ns["animal"] = "fox"
    out = cell(shell, "--out st --temperature 0 --max-tokens 10 --arg count=2",
               's += "The quick brown " + animal\n'
               'for i in range(count):\n'
               '    s += " and" + gen(f"g{i}")\n'
               'first = s["g0"]\n')
    assert out is None
    st = shell.user_ns["st"]
    printed = capsys.readouterr().out
    assert printed == st.text + ("" if st.text.endswith("\n") else "\n")
    prompt = "The quick brown fox and"
    g0 = engine.generate(prompt, SamplingParams(temperature=0, max_tokens=10))[0].outputs[0].text
    assert st["g0"] == g0 and shell.user_ns["first"] == g0      # top-level names land in the notebook
    assert "count" not in shell.user_ns and "s" not in shell.user_ns
    assert cell(shell, "--temperature 0 --max-tokens 2", 's += "x" + gen("y")\n').text.startswith("x")


def test_show_ir_for_a_program_cell(shell, engine, capsys):
    cell(shell, "--show-ir --max-tokens 2", 'with s.user():\n    s += "hi"\ns += assistant(gen("a"))\n')
    out = capsys.readouterr().out
    assert out.startswith("program cell(s)   # cell\n    2   role     user begin\n")
    assert "    4   gen      a" in out


def test_appending_to_one_fork_by_index_in_a_cell(shell, engine, capsys):
    st = cell(shell, "--show-ir --temperature 0 --max-tokens 4",
              's += "Once"\nforks = s.fork(2)\nforks[0] += " upon"\nforks[1] += " a" + gen("x")\n'
              'forks.join()\n')
    listing = capsys.readouterr().out
    assert "    4   text     ' upon'  -> forks[0]\n" in listing
    assert "    5   text     ' a'  -> forks[1]\n    5   gen      x    -> forks[1]\n" in listing
    x = engine.generate("Once a", SamplingParams(temperature=0, max_tokens=4))[0].outputs[0].text
    assert st["x"] == [x] and st.text == "Once"


def test_default_backend_is_used_when_no_engine_is_loaded(shell, shared_llm, capsys):
    session._llm = None
    other = LLM(shared_llm.config.model, num_kv_blocks=32)
    try:
        sgl.set_default_backend(other)
        st = cell(shell, "--max-tokens 3", 's += "Hello" + gen("x")\n')
        assert any(True for _ in [st]) and st.stats.num_requests == 1
        assert other.stats().prompt_tokens_total > 0
        # a loaded notebook engine wins over the default backend
        session.set_llm(shared_llm)
        before = other.stats().prompt_tokens_total
        cell(shell, "--max-tokens 3", 's += "Hello" + gen("x")\n')
        assert other.stats().prompt_tokens_total == before
    finally:
        session._llm = None
        sgl.set_default_backend(None)
        other.shutdown()


@pytest.mark.parametrize("line, words", [
    ("--bogus", "unrecognized arguments: --bogus"),
    ("--out 1x", "'1x' is not a valid Python variable name"),
    ("--temperature hot", "expected a number, got 'hot'"),
    ("--max-tokens 0", "must be >= 1"),
    ("--arg novalue", "expected NAME=VALUE"),
    ('--out "unclosed', "No closing quotation"),
])
def test_bad_flags_are_one_line_usage_errors(shell, line, words):
    from IPython.core.error import UsageError
    with pytest.raises(UsageError) as info:
        cell(shell, line, 's += "x"\n')
    message = str(info.value)
    assert words in message and message.startswith("%%sgl: ") and "\n" not in message


def test_program_only_flags_on_a_definitions_cell(shell):
    from IPython.core.error import UsageError
    with pytest.raises(UsageError, match="--out only apply to a program cell"):
        cell(shell, "--out x", "@function\ndef p(s):\n    s += 'a'\n")


def test_errors_render_as_one_line_with_the_cell_line(shell, engine, capsys):
    shell.run_cell('%%sgl\ns += "a"\nfor i in range(2):\n    s = 1\n')
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == ("SglCompileError: cell line 4, column 5: rebinding the program state 's' is not "
                       "supported; use another name")
    assert not any("Traceback" in line for line in out)

    shell.run_cell('%%sgl --max-tokens 2\ns += "a" + gen("x")\ny = undefined_name\n')     # line 3
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "SglError: NameError at cell line 3: name 'undefined_name' is not defined"

    shell.run_cell('%%sgl\nwith s.user():\n    s += user("nested")\n')
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == ("SglError at cell line 3: cannot begin a user message inside the open user message: "
                       "roles do not nest")

    shell.run_cell('%%sgl\n@instruct\ndef p(s):\n    s.if_(True)\n')
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("SglCompileError: cell line 4, column 5: s.if_(...) opens a block")



@pytest.mark.parametrize("body, message", [
    # a definitions cell: Python's compiler refuses it before any program is defined
    ('@function\ndef p(s):\n    s += "a"\n    break\n', "cell line 5, column 5: 'break' outside loop"),
    ('@function\ndef p(s):\n    def q():\n        nonlocal zz\n    s += "a"\n',
     "cell line 5, column 9: no binding for nonlocal 'zz' found"),
    ('@function\ndef p(s):\n    x = "éé"; break\n', "cell line 4, column 15: 'break' outside loop"),
    ('break\n', "cell line 2, column 1: 'break' outside loop"),
    # a program cell whose plain-Python statements do not compile
    ('s += "a"\ndef q():\n    nonlocal zz\n', "cell line 4, column 5: no binding for nonlocal 'zz' found"),
    ('s += "a"\nx = [i for i in range(3) if (yield)]\n',
     "cell line 3, column 30: 'yield' inside list comprehension"),
])
def test_python_compile_errors_are_one_line_with_the_cell_line_and_column(shell, body, message, capsys):
    result = shell.run_cell("%%sgl\n" + body)
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["SglCompileError: " + message]
    assert isinstance(result.error_in_exec, sgl.SglCompileError)
    assert "p" not in shell.user_ns or not isinstance(shell.user_ns["p"], sgl.SglFunction)

FAN_OUT = ('%%sgl\ns += "Once upon a time"\nforks = s.fork(2)\n'
           'forks += gen("x", max_tokens=400, ignore_eos=True)\nforks.join()\n')


@pytest.fixture
def own_engine(llama_dir):
    """The notebook's engine, of its own: its stats count only this test's requests."""
    llm = LLM(llama_dir, num_kv_blocks=128)
    session.set_llm(llm)
    yield llm
    session._llm = None
    llm.shutdown()


def wait_running(llm, n, timeout=60.0):
    deadline = time.monotonic() + timeout
    while llm.stats().num_running < n and time.monotonic() < deadline:
        time.sleep(0.005)
    assert llm.stats().num_running >= n


def idle(llm):
    stats = llm.stats()
    return stats.num_running, stats.num_waiting, stats.blocks_used


def one_line(capsys, result) -> str:
    """The interrupt IPython showed: exactly one line, no traceback."""
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    out = capsys.readouterr()
    shown = (out.out + out.err).strip().splitlines()
    assert not any("Traceback" in line or "nbinfer/" in line for line in shown), shown
    (message,) = result.error_in_exec._render_traceback_()
    assert shown[-1] == message
    return message


def test_ctrl_c_cancels_the_program_and_frees_its_blocks(shell, own_engine, capsys):
    threading.Thread(target=lambda: (wait_running(own_engine, 1), _thread.interrupt_main()), daemon=True).start()
    result = shell.run_cell(FAN_OUT)
    message = one_line(capsys, result)
    assert message.startswith("interrupted: ") and message.endswith("KV blocks freed")
    assert idle(own_engine) == (0, 0, 0)


def test_ctrl_c_inside_start_cancels_what_the_forks_already_sent(shell, own_engine, capsys, monkeypatch):
    """The flaky case made certain: the interrupt lands inside SglCell.start, after the runner's
    forks have submitted their requests (seen under load as `(2, 0, 6) == (0, 0, 0)`)."""
    from nbinfer.lang import cell as cell_module
    real_start_run = cell_module.start_run

    def start_run_then_interrupt(state, body):
        real_start_run(state, body)
        wait_running(own_engine, 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(cell_module, "start_run", start_run_then_interrupt)
    result = shell.run_cell(FAN_OUT)
    assert idle(own_engine) == (0, 0, 0)
    assert one_line(capsys, result) == "interrupted: 2 requests cancelled, their KV blocks freed"


def test_ctrl_c_before_the_runner_starts_sends_nothing_and_does_not_hang(shell, own_engine, capsys,
                                                                          monkeypatch):
    from nbinfer.lang import program

    class InterruptedStart(threading.Thread):
        def start(self):
            raise KeyboardInterrupt             # before the thread exists: the body never runs

    monkeypatch.setattr(program, "threading", types.SimpleNamespace(Thread=InterruptedStart))
    result = shell.run_cell("%%sgl --out st\n" + FAN_OUT.split("\n", 1)[1])
    assert one_line(capsys, result) == "interrupted: the program stopped; none of its requests was running"
    assert own_engine.stats().prompt_tokens_total == 0 and idle(own_engine) == (0, 0, 0)
    st = shell.user_ns["st"]
    assert st.stats.num_requests == 0 and isinstance(st.error(), KeyboardInterrupt)


def test_a_click_after_the_program_finished_claims_nothing(shell, own_engine, capsys, monkeypatch):
    from nbinfer.lang.state import ProgramState
    real_text_iter = ProgramState.text_iter

    def text_iter_then_click(self, var_name=None):
        yield from real_text_iter(self, var_name)
        assert self.done
        raise KeyboardInterrupt                 # the stop button, just after the last chunk

    monkeypatch.setattr(ProgramState, "text_iter", text_iter_then_click)
    result = shell.run_cell('%%sgl --out st\ns += "Once upon a time" + gen("x", max_tokens=5)\n')
    assert one_line(capsys, result) == "interrupted after the generation had finished; nothing was cancelled"
    st = shell.user_ns["st"]
    assert st.stats.cancelled_requests == 0 and st.error() is None and st.text.endswith(st["x"])
    st += " More."                              # the finished state was not cancelled after the fact
    assert st.text.endswith(" More.")


def test_ctrl_c_in_f_run_in_a_notebook_cell_is_one_line_too(shell, own_engine, capsys):
    shell.run_cell_magic("sgl", "", '@function\ndef fan(s):\n    s += "Once upon a time"\n'
                                    '    forks = s.fork(2)\n    forks += gen("x", max_tokens=400, ignore_eos=True)\n'
                                    '    s += gen("y", max_tokens=400, ignore_eos=True)\n    forks.join()\n')
    threading.Thread(target=lambda: (wait_running(own_engine, 3), _thread.interrupt_main()), daemon=True).start()
    result = shell.run_cell("st = fan.run()")
    assert one_line(capsys, result) == "interrupted: 3 requests cancelled, their KV blocks freed"
    assert idle(own_engine) == (0, 0, 0)


def test_ctrl_c_in_run_batch_in_a_notebook_cell_is_one_line_too(shell, own_engine, capsys):
    shell.run_cell_magic("sgl", "", '@function\ndef tell(s, start):\n'
                                    '    s += start + gen("x", max_tokens=400, ignore_eos=True)\n')
    threading.Thread(target=lambda: (wait_running(own_engine, 3), _thread.interrupt_main()), daemon=True).start()
    result = shell.run_cell('states = tell.run_batch([{"start": "Once"}, {"start": "The"}, {"start": "A"}])')
    assert one_line(capsys, result) == "interrupted: 3 requests cancelled, their KV blocks freed"
    assert idle(own_engine) == (0, 0, 0)
