"""The interpreter and program state on a scripted backend: control flow, forks, scopes, roles,
returns, streaming and errors behave as the Python they are written in (no model needed)."""
import re
import threading
import time

import pytest

import nbinfer as sgl
from nbinfer.lang.backends import Backend, GenResult
from nbinfer.lang.chat_template import ChatTemplate
from nbinfer.lang.errors import SglError


class _NoTemplate:
    chat_template = None


class ScriptedBackend(Backend):
    """gen -> "<k>" for the k-th call (or what `replies` says for a variable); select -> the
    shortest choice (log-prob -len per token)."""

    def __init__(self, replies=None, delay=0.0):
        self.replies = dict(replies or {})
        self.delay = delay
        self.prompts = []
        self.lock = threading.Lock()
        self._template = ChatTemplate(_NoTemplate())

    @property
    def chat_template(self):
        return self._template

    def generate(self, prompt, req, run, on_delta=None):
        with self.lock:
            self.prompts.append(prompt)
            k = len(self.prompts)
        text = self.replies.get(prompt, f"<{k}>")
        for ch in text:
            time.sleep(self.delay)
            if on_delta:
                on_delta(ch)
        run.stats.record(len(prompt), 0, len(text))
        return GenResult(text, {"max_tokens": req.max_tokens, "temperature": req.temperature})

    def choice_logprobs(self, prefix, choices, run):
        return [[(-1.0, i, ch) for i, ch in enumerate(c)] + [(-float(len(c)), 0, "")] for c in choices]


@pytest.fixture
def backend():
    b = ScriptedBackend()
    sgl.set_default_backend(b)
    yield b
    sgl.set_default_backend(None)


def test_straight_line_program_text_vars_and_sampling_defaults(backend):
    @sgl.function
    def qa(s, question):
        s += "Q: " + question + "\nA:" + sgl.gen("answer", max_tokens=7, temperature=0.3)
        s += " / " + sgl.gen("more")

    st = qa.run(question="why?", max_new_tokens=11, temperature=0.9)
    assert st.text() == "Q: why?\nA:<1> / <2>"
    assert st.text == "Q: why?\nA:<1> / <2>"        # the seed's attribute form
    assert st["answer"] == "<1>" and "answer" in st and "nope" not in st
    assert backend.prompts == ["Q: why?\nA:", "Q: why?\nA:<1> / "]
    assert st.get_meta_info("answer") == {"max_tokens": 7, "temperature": 0.3}
    assert st.get_meta_info("more") == {"max_tokens": 11, "temperature": 0.9}    # run()'s defaults
    assert st.stats.num_requests == 2


def test_control_flow_runs_like_python(backend):
    @sgl.function
    def flow(s, items):
        total = 0
        for i, item in enumerate(items):
            if item == "skip":
                continue
            if item == "stop":
                break
            s += f"[{i}:{item}]" + sgl.gen(f"g{i}")
            total += i
        else:
            s += "(all)"
        n = 0
        while n < 2:
            n += 1
            s += "w"
        if s["g0"].contains("<") & (total > 100):
            s += "big"
        elif s["g0"].contains("<1>") | False:
            s += "first"
        else:
            s += "other"
        return total

    st = flow.run(items=["a", "skip", "b", "stop", "c"])
    assert st.text == "[0:a]<1>[2:b]<2>wwfirst"
    assert st.ret_value == 2
    st = flow.run(items=["a"])
    assert st.text.endswith("(all)wwother") and st.ret_value == 0


def test_return_from_inside_loops_try_and_helpers(backend):
    def give_up(s):
        s.return_("from helper")

    @sgl.function
    def early(s, mode):
        try:
            for i in range(5):
                s += str(i)
                if mode == "loop" and i == 1:
                    return "loop"
                if mode == "helper":
                    give_up(s)
                if mode == "raise":
                    raise ValueError("boom")
        except ValueError as e:
            s += f"caught {e}"
        finally:
            s += "|finally"
        s.return_("end")

    st = early.run(mode="loop")
    assert (st.ret_value, st.text) == ("loop", "01|finally")
    assert early.run(mode="helper").ret_value == "from helper"
    st = early.run(mode="raise")
    assert (st.text, st.ret_value) == ("0caught boom|finally", "end")


def test_roles_without_a_chat_template_and_messages(backend):
    @sgl.function
    def chat(s):
        s += sgl.system("Be brief.")
        with s.user():
            s += "Hi"
        s += sgl.assistant(sgl.gen("reply"))

    st = chat.run()
    assert st.text == "SYSTEM:Be brief.\nUSER:Hi\nASSISTANT:<1>\n"
    assert st.messages() == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                             {"role": "assistant", "content": "<1>"}]


def test_roles_do_not_nest(backend):
    @sgl.function
    def bad(s):
        with s.user():
            s += sgl.assistant("x")

    with pytest.raises(SglError, match="roles do not nest") as info:
        bad.run()
    assert getattr(info.value, "_sgl_where", "").startswith("test_sgl_runtime.py line ")


def test_var_scope_captures_text(backend):
    @sgl.function
    def scoped(s):
        s += "a"
        with s.var_scope("middle"):
            s += "b" + sgl.gen("x") + "c"
        s += "d"

    st = scoped.run()
    assert st["middle"] == "b<1>c" and st.text == "ab<1>cd"


def test_fork_gather_and_concatenate(backend):
    @sgl.function
    def tips(s):
        s += "Tips:"
        forks = s.fork(3)
        forks += lambda i: f" ({i})" + sgl.gen("tip")
        forks += [" a", " b", " c"]
        forks += "!"
        forks.join()
        s += "|".join(sorted(s["tip"]))
        more = s.fork(2)
        for i, f in enumerate(more):
            f += f" <{i}>"
        more.join(mode="concate_and_append")

    st = tips.run()
    assert len(st["tip"]) == 3 and all(t.startswith("<") for t in st["tip"])
    assert st.text.startswith("Tips:<") and st.text.endswith(" <0> <1>")
    fork_prompts = [p for p in backend.prompts if p.startswith("Tips: (")]
    assert sorted(fork_prompts) == ["Tips: (0)", "Tips: (1)", "Tips: (2)"]


FORK_ITEMS = """
def tips(s):
    s += "Tips:"
    forks = s.fork(3)
    forks[0] += " first"
    forks[-1] += " last" + sgl.gen("tip")
    for i in range(2):
        forks[i] += " more" + sgl.gen("more")
    forks.join()
"""


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "plain-python"])
def test_appending_to_one_fork_by_index(backend, compiled, tmp_path):
    """SGLang's `forks[i] += ...`: compiled to instructions, and as plain Python (no source to
    compile: Python then stores forks[i] back, which must be the same fork)."""
    ns = {"sgl": sgl}
    if compiled:
        path = tmp_path / "fork_items.py"
        path.write_text(FORK_ITEMS)
        exec(compile(FORK_ITEMS, str(path), "exec"), ns)
    else:
        exec(FORK_ITEMS, ns)                    # no file: inspect cannot read the source back
    tips = sgl.function(ns["tips"])
    assert (tips.program is not None) == compiled
    st = tips.run()
    forks_text = sorted(p for p in backend.prompts if p.startswith("Tips:"))
    assert forks_text == ["Tips: first more", "Tips: last", "Tips: more"]
    assert len(st["tip"]) == 1 and len(st["more"]) == 2 and st.text == "Tips:"


def test_a_fork_group_item_cannot_be_replaced(backend):
    @sgl.function
    def swap(s):
        forks = s.fork(2)
        forks[0] = forks[1]

    with pytest.raises(SglError, match=r"forks\[0\] = \.\.\.: the forks of a fork group cannot be replaced"):
        swap.run()


def test_forks_run_concurrently():
    backend = ScriptedBackend(delay=0.02)          # each gen takes ~0.1 s (5 chars)

    @sgl.function
    def fan(s):
        forks = s.fork(4)
        forks += sgl.gen("x")
        forks.join()

    t = time.monotonic()
    st = fan.run(backend=backend)
    elapsed = time.monotonic() - t
    assert len(st["x"]) == 4
    assert elapsed < 0.3, f"4 forks took {elapsed:.2f}s: they ran one after another"


def test_streaming_text_iter_matches_the_final_text():
    backend = ScriptedBackend(delay=0.005)

    @sgl.function
    def story(s):
        s += "Once"
        s += sgl.gen("a")
        s += " then"
        s += sgl.gen("b")

    st = story.run(stream=True, backend=backend)
    chunks = list(st.text_iter())
    assert len(chunks) > 2 and "".join(chunks) == st.text == "Once<1> then<2>"
    st = story.run(stream=True, backend=ScriptedBackend(delay=0.005))
    assert "".join(st.text_iter("b")) == "<2>" == st["b"]
    st = story.run(backend=ScriptedBackend())
    assert list(st.text_iter()) == ["Once<1> then<2>"]     # not streamed: all at once

    @sgl.function
    def forked(s):
        s += "Tips:"
        forks = s.fork(2)
        forks += sgl.gen("tip")
        return forks                      # streamed from outside; they end with the program

    st = forked.run(stream=True, backend=ScriptedBackend(delay=0.005))
    streamed = ["".join(f.text_iter()) for f in st.ret_value] if st.error() is None else None
    assert streamed == [f.text for f in st.ret_value] and all(t.startswith("Tips:<") for t in streamed)


def test_errors_keep_their_type_and_name_the_program_line(backend):
    @sgl.function
    def broken(s):
        s += "a"
        s += sgl.gen("x")
        y = undefined_name  # noqa: F821
        s += y

    with pytest.raises(NameError) as info:
        broken.run()
    line = broken.func.__code__.co_firstlineno + 4
    assert info.value._sgl_where == f"test_sgl_runtime.py line {line}"
    assert any(f"line {line}" in note for note in info.value.__notes__)


def test_missing_variable_and_bad_appends_are_clear(backend):
    @sgl.function
    def reads(s):
        s += sgl.gen("x")
        return s["y"]

    with pytest.raises(KeyError, match="has no variable 'y' \\(it has: 'x'\\)"):
        reads.run()

    @sgl.function
    def appends_int(s):
        s += 3

    with pytest.raises(TypeError, match="can only append str or SGL expressions"):
        appends_int.run()


def test_arguments_bind_and_batch(backend):
    @sgl.function
    def greet(s, name, punct="!"):
        s += "Hello " + name + punct

    with pytest.raises(SglError, match="greet\\(\\): missing a required argument: 'name'"):
        greet.run()
    assert greet.bind(punct="?").run(name="x").text == "Hello x?"
    states = greet.run_batch([{"name": "a"}, {"name": "b"}, ["c", "."]], num_threads=2)
    assert [st.text for st in states] == ["Hello a!", "Hello b!", "Hello c."]


def test_namespace_closures_comprehensions_and_sgl_names(backend):
    prefix = "P:"

    def shout(x):
        return x.upper()

    @sgl.function
    def uses(s, words):
        joined = ",".join([shout(w) for w in words if w])
        s += prefix + joined
        s += gen("g")          # noqa: F821 - SGL names are in scope in a program body

    assert uses.run(words=["a", "", "b"]).text == "P:A,B<1>"


def test_programs_without_source_run_as_plain_python(backend):
    ns = {"sgl": sgl}
    exec("def p(s, x):\n    s += x + sgl.gen('g')\n    return 5\n", ns)
    prog = sgl.function(ns["p"])
    assert prog.program is None and "no source" in prog.ir()
    st = prog.run(x="hi")
    assert (st.text, st.ret_value) == ("hi<1>", 5)


def test_select_picks_by_normalized_logprob_and_appends(backend):
    @sgl.function
    def pick(s):
        s += "Answer: " + sgl.select("a", choices=["yes", "no", "maybe"])

    st = pick.run()
    assert st["a"] == "no" and st.text == "Answer: no"
    meta = st.get_meta_info("a")
    assert meta["normalized_prompt_logprobs"] == [-1.5, -1.3333333333333333, -1.6666666666666667]


def test_no_backend_is_a_clear_error():
    sgl.set_default_backend(None)

    @sgl.function
    def p(s):
        s += "x"

    with pytest.raises(SglError, match="no model to run the program on"):
        p.run()


# -- separate_reasoning (SGLang's, for reasoning models) --------------------------------------------
QA_PROMPT = "USER:Why?\nASSISTANT:"


@pytest.mark.parametrize("model_type, reply, reasoning, answer", [
    ("qwen3", "<think>\nIt is blue.\n</think>\n\nBlue.", "It is blue.\n", "Blue."),
    ("qwen3", "Blue.", "", "Blue."),                                   # thinking off: all answer
    ("qwen3", "<think>still thinking", "still thinking", ""),          # cut short: all reasoning
    ("deepseek-r1", "It is blue.</think>Blue.", "It is blue.", "Blue."),   # R1 starts inside <think>
    ("kimi", "\u25c1think\u25b7hm\u25c1/think\u25b7 Blue.", "hm", "Blue."),
])
def test_separate_reasoning_splits_the_thinking_off_the_answer(model_type, reply, reasoning, answer):
    backend = ScriptedBackend({QA_PROMPT: reply})

    @sgl.function
    def qa(s):
        s += sgl.user("Why?")
        s += sgl.assistant(sgl.separate_reasoning(sgl.gen("a"), model_type=model_type))
        s += sgl.user("Sure?")

    st = qa.run(backend=backend)
    assert st["a"] == answer and st["a_reasoning_content"] == reasoning
    assert st.text == QA_PROMPT + answer + "\nUSER:Sure?\n"
    assert st.messages()[1] == {"role": "assistant", "content": answer}


def test_separate_reasoning_in_forks_and_on_a_stream():
    backend = ScriptedBackend({"Q": "<think>r</think>ans"}, delay=0.001)

    @sgl.function
    def fan(s):
        s += "Q" + sgl.separate_reasoning(sgl.gen("a") + "!", model_type="qwen3") + " tail"
        forks = s.fork(2)
        forks += sgl.separate_reasoning(sgl.gen("b"), model_type="deepseek-r1")
        s += forks[0]["b_reasoning_content"] + forks[1]["b"]      # read on this thread: waits for each
        forks.join()

    st = fan.run(backend=backend, stream=True)
    shown = "".join(st.text_iter())
    # the stream showed the gen's text as it came; after it was split, the rest streams on
    assert shown == "Q<think>r</think>ans! tail" + st.text[len("Qans! tail"):]
    assert st.text.startswith("Qans! tail") and st["a"] == "ans" and st["a_reasoning_content"] == "r"
    b = sorted(backend.prompts)[1:]             # the two forks' gens ("<2>", "<3>") have no </think>
    assert len(b) == 2 and st["b"] == ["", ""] and sorted(st["b_reasoning_content"]) == ["<2>", "<3>"]


@pytest.mark.parametrize("call, message", [
    (lambda: sgl.separate_reasoning(sgl.gen("a"), model_type="nope"),
     "separate_reasoning(model_type='nope'): unknown model type; known: deepseek-r1, deepseek-v3"),
    (lambda: sgl.separate_reasoning(sgl.gen("a")), "separate_reasoning() needs model_type= one of: deepseek-r1"),
    (lambda: sgl.separate_reasoning(sgl.gen("a"), model_type="gpt-oss"), "the Harmony format"),
    (lambda: sgl.separate_reasoning(sgl.gen(), model_type="qwen3"), "needs a named gen / select"),
    (lambda: sgl.separate_reasoning("text", model_type="qwen3"), "needs a gen(...) or select(...) to separate"),
])
def test_separate_reasoning_misuse_is_one_sentence(call, message):
    with pytest.raises(SglError, match=re.escape(message)):
        call()


@pytest.mark.parametrize("shown, expect", [
    ("Q<think>r</think>ans", " tail"),       # caught up when the gen's text was split: the rest follows
    ("Q<think>r</th", "ink>ans tail"),       # lagging inside it: what it had not shown yet, as it was
    ("", "Qans tail"),                       # not started: the text as it is now
])
def test_a_streaming_reader_follows_a_rewritten_text(shown, expect):
    from nbinfer.lang.context import ProgramRun
    from nbinfer.lang.executor import StateExecutor
    from nbinfer.lang.sampling import RunDefaults
    exe = StateExecutor(ProgramRun(ScriptedBackend(), RunDefaults.make()))
    exe.append("Q<think>r</think>ans")
    exe._replace_tail(1, "ans")              # what separate_reasoning does
    exe.append(" tail")
    pos, seen, missed = exe.follow_rewrites(len(shown), 0)
    assert (seen, missed + exe.text[pos:]) == (1, expect)
