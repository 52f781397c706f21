"""The SGL compiler: pseudo-syntax pre-pass, lowering of each construct, listings, line-numbered errors."""
import ast

import pytest

from nbinfer.lang import ir
from nbinfer.lang.compiler import compile_function, compile_program_source
from nbinfer.lang.errors import SglCompileError
from nbinfer.lang.pseudo_syntax import rewrite_pseudo_syntax

CELL = "<sgl-cell-test>"


def lower(src: str) -> list[ir.Instr]:
    return compile_program_source(src, CELL).body


def kinds(body) -> list[str]:
    return [type(i).__name__ for i in body]


def compile_error(src: str) -> SglCompileError:
    with pytest.raises(SglCompileError) as info:
        compile_program_source(src, CELL)
    return info.value


# -- the pseudo-syntax pre-pass -------------------------------------------------------------------
def test_pseudo_syntax_becomes_python_with_the_same_columns():
    src = ('s.if_(s["a"].contains("不知道") | s["a"].contains("不确定")):\n'
           '    pass\n'
           's.elif_(x > 1):\n'
           '    pass\n'
           's.else_():\n'
           '    pass\n'
           's.while_(n):  # a comment\n'
           '    n -= 1\n')
    out = rewrite_pseudo_syntax(src)
    ast.parse(out)
    for before, after in zip(src.splitlines(), out.splitlines()):
        assert len(before) == len(after)
    lines = out.splitlines()
    assert lines[0].startswith("if   (s[") and lines[2].startswith("elif   (x > 1)")
    assert lines[4].rstrip().startswith("else") and lines[4].rstrip().endswith(":")
    assert lines[6].startswith("while   (n):")
    # the condition kept its column: an error inside it would point at the same place
    assert out.splitlines()[0].index('s["a"]') == src.splitlines()[0].index('s["a"]')


def test_pseudo_syntax_leaves_strings_comments_and_calls_alone():
    src = 'x = "s.if_(a):"\n# s.if_(b):\ny = s.if_\nf(s.else_())\n'
    assert rewrite_pseudo_syntax(src) == src


# -- lowering, construct by construct -------------------------------------------------------------
def test_append_splits_a_concatenation_into_instructions_in_order():
    body = lower('s += "Q: " + question + gen("answer", max_tokens=8, stop="\\n") + "."\n')
    assert kinds(body) == ["AppendText", "AppendValue", "Gen", "AppendText"]
    assert body[0].text == "Q: " and body[1].value.src == "question"
    assert body[2].name == "answer" and body[2].args == "max_tokens=8, stop='\\n'"
    assert all(i.target is None for i in body)      # the program's own state


def test_seed_generate_and_return_forms():
    body = lower('s.generate(name="x", max_tokens=300, temperature=0.5)\ns.return_(s["x"])\n')
    assert kinds(body) == ["Gen", "Return"]
    assert body[0].name == "x" and "max_tokens=300" in body[0].args
    assert body[1].value.src == "s['x']"


def test_select_forms():
    body = lower('s += select("c", choices=["a", "b"])\ns += gen("d", choices=["x", "y"])\n'
                 's.select("e", choices=["p", "q"])\n')
    assert kinds(body) == ["Select", "Gen", "Select"]     # gen(choices=) is a select at run time
    assert [i.name for i in body] == ["c", "d", "e"]


def test_roles_as_expressions_and_as_with_blocks():
    body = lower('s += system("be brief")\n'
                 'with s.user():\n'
                 '    s += "hi " + name\n'
                 's += assistant(gen("reply", max_tokens=4))\n'
                 's += user_begin() + "x" + user_end()\n')
    assert kinds(body) == ["RoleBegin", "AppendText", "RoleEnd",
                           "RoleBegin", "AppendText", "AppendValue", "RoleEnd",
                           "RoleBegin", "Gen", "RoleEnd",
                           "RoleBegin", "AppendText", "RoleEnd"]
    assert [i.role for i in body if isinstance(i, ir.RoleBegin)] == ["system", "user", "assistant", "user"]


def test_if_elif_else_including_the_seed_forms():
    body = lower('s.if_(s["a"].contains("x") | s["a"].contains("y")):\n'
                 '    s += "1"\n'
                 'elif n > 2:\n'
                 '    s += "2"\n'
                 's.else_():\n'
                 '    s.return_(3)\n')
    assert kinds(body) == ["If"]
    node = body[0]
    assert [b.line for b in node.branches] == [1, 3]
    assert node.branches[0].cond.src == "s['a'].contains('x') | s['a'].contains('y')"
    assert kinds(node.branches[1].body) == ["AppendText"] and kinds(node.orelse) == ["Return"]


def test_loops_with_break_continue_and_else():
    body = lower('for i, q in enumerate(questions):\n'
                 '    if i > 3:\n'
                 '        break\n'
                 '    if not q:\n'
                 '        continue\n'
                 '    s += q + gen("a" + str(i))\n'
                 'else:\n'
                 '    s += "done"\n'
                 'while len(s["a0"]) < 5:\n'
                 '    s += gen("a0", max_tokens=1)\n')
    assert kinds(body) == ["For", "While"]
    loop = body[0]
    assert loop.target == "i, q" and loop.iter.src == "enumerate(questions)"
    assert kinds(loop.body) == ["If", "If", "AppendValue", "Gen"]
    assert kinds(loop.body[0].branches[0].body) == ["Break"]
    assert kinds(loop.body[1].branches[0].body) == ["Continue"]
    assert kinds(loop.orelse) == ["AppendText"]
    assert body[2 - 1].cond.src == "len(s['a0']) < 5"


def test_host_python_stays_whole_when_it_does_not_touch_the_state():
    body = lower('total = 0\nfor k in range(10):\n    total += k\n'
                 'def helper(x):\n    return x * 2\n'
                 'if total > 3:\n    print(total)\n'
                 'names = [n for n in "abc"]\n')
    assert kinds(body) == ["Host"] * 5
    assert body[1].stmt.src.startswith("for k in range(10):")


def test_fork_join_and_appending_to_forks():
    body = lower('forks = s.fork(3)\n'
                 'forks += lambda i: f"tip {i}: " + gen("tip", max_tokens=8)\n'
                 'for f in forks:\n'
                 '    f += "!" + gen("more")\n'
                 'forks.join(mode="concate_and_append")\n')
    assert kinds(body) == ["Fork", "AppendTo", "For", "Join"]
    assert body[0].target == "forks" and body[0].call.src == "s.fork(3)"
    assert body[1].target.src == "forks" and kinds(body[1].parts) == ["AppendValue"]
    assert kinds(body[2].body) == ["AppendTo"] and kinds(body[2].body[0].parts) == ["AppendText", "Gen"]
    assert body[3].call.src == "forks.join(mode='concate_and_append')"


def test_appending_to_one_fork_by_index():
    """SGLang's `forks[i] += ...` is an instruction on fork i (text too, not only gen), while
    `x[i] += ...` on anything that is not a fork group stays Python."""
    body = lower('forks = s.fork(2)\n'
                 'forks[0] += "first"\n'
                 'for i in range(2):\n'
                 '    forks[i] += " tip:" + gen("tip")\n'
                 'counts = [0]\n'
                 'counts[0] += 1\n'
                 'forks.join()\n')
    assert kinds(body) == ["Fork", "AppendTo", "For", "Host", "Host", "Join"]
    assert body[1].target.src == "forks[0]" and kinds(body[1].parts) == ["AppendText"]
    assert body[1].parts[0].text == "first"
    assert kinds(body[2].body) == ["AppendTo"] and body[2].body[0].target.src == "forks[i]"
    assert kinds(body[2].body[0].parts) == ["AppendText", "Gen"]


def test_var_scope_try_and_with_are_lowered_when_they_hold_state_actions():
    body = lower('with s.var_scope("para"):\n'
                 '    s += "text" + gen("x")\n'
                 'try:\n'
                 '    s += gen("y")\n'
                 'except ValueError as e:\n'
                 '    s += str(e)\n'
                 'finally:\n'
                 '    s += "."\n'
                 'with open("f") as fh:\n'
                 '    s += fh.read()\n')
    assert kinds(body) == ["VarScopeBegin", "AppendText", "Gen", "VarScopeEnd", "Try", "With"]
    assert body[0].name.src == "'para'"
    t = body[4]
    assert t.handlers[0].type.src == "ValueError" and t.handlers[0].name == "e"
    assert kinds(t.finalbody) == ["AppendText"]
    assert body[5].manager.src == "open('f')" and body[5].assign is not None


def test_augmented_add_on_non_state_keeps_a_python_fallback():
    body = lower('count = 0\ncount += 1\nbuf += gen_like(1)\nbuf += select("x", choices=["a", "b"])\n')
    assert kinds(body) == ["Host", "Host", "Host", "AppendTo"]
    assert body[3].fallback.src == "buf += select('x', choices=['a', 'b'])"


def test_compile_function_keeps_file_line_numbers():
    def prog(s, topic, n=2):
        s += "About " + topic
        for i in range(n):
            s += gen(f"p{i}", max_tokens=4)  # noqa: F821 - compiled, never run

    program = compile_function(prog)
    first = prog.__code__.co_firstlineno
    assert program.name == "prog" and program.params == ["topic", "n"] and program.state_name == "s"
    assert [i.line for i in program.body] == [first + 1, first + 1, first + 2]
    assert program.where == "test_sgl_compiler.py"


def test_listing_shows_every_instruction_with_its_line():
    program = compile_program_source(
        's += "Q:" + gen("a", max_tokens=4)\n'
        's.if_(s["a"].contains("x")):\n'
        '    s.return_(1)\n'
        'forks = s.fork(2)\n'
        'forks.join()\n', CELL)
    text = program.listing()
    assert text.splitlines()[0] == "program cell(s)   # cell"
    assert "    1   text     'Q:'" in text
    assert "    1   gen      a  max_tokens=4" in text
    assert "    2   if       s['a'].contains('x')" in text
    assert "    3     return   1" in text
    assert "    4   fork     forks = s.fork(2)" in text
    assert "    5   join     forks.join()" in text


# -- errors name the line and column --------------------------------------------------------------
@pytest.mark.parametrize("src, line, col, words", [
    ('s += "a"\ns = "b"\n', 2, 1, "rebinding the program state 's'"),
    ('for s in items:\n    pass\n', 1, 5, "rebinding the program state 's'"),
    ('s += "x"\ns -= "a"\n', 2, 1, "only 's += ...' changes a program state"),
    ('global counter\n', 1, 1, "'global' is not supported"),
    ('x = 1\nyield x\n', 2, 1, "'yield' is not supported"),
    ('s += "a"\ns.if_(ok)\n', 2, 1, "opens a block"),
    ('s += "é"\nx = (\n', 2, 5, "invalid syntax"),
    ('y = "请解释"; s.else_()\n', 1, 12, "opens a block"),
    ('while x:\n    pass\nbreak\n', 3, 1, "'break' outside a loop"),
    ('with s.user("hi"):\n    pass\n', 1, 6, "takes no arguments"),
    ('match v:\n    case 1:\n        s += gen("a")\n', 1, 1, "'match' statement"),
])
def test_bad_programs_fail_with_the_cell_line_and_column(src, line, col, words):
    e = compile_error(src)
    assert (e.line, e.column) == (line, col)
    assert words in str(e)
    assert str(e).startswith(f"cell line {line}, column {col}: ")
    assert "\n" not in str(e)


def test_errors_in_a_function_point_at_the_file_line():
    ns = {}
    src = "def bad(s):\n    s += 'a'\n    s = 3\n"
    code = compile(src, "/tmp/prog_file.py", "exec")
    import linecache
    linecache.cache["/tmp/prog_file.py"] = (len(src), None, src.splitlines(True), "/tmp/prog_file.py")
    exec(code, ns)
    with pytest.raises(SglCompileError) as info:
        compile_function(ns["bad"])
    assert (info.value.where, info.value.line, info.value.column) == ("prog_file.py", 3, 5)


def test_functions_without_source_run_as_plain_python():
    ns = {}
    exec("def p(s):\n    s += 'x'\n", ns)        # no linecache entry: no source
    assert compile_function(ns["p"]) is None
