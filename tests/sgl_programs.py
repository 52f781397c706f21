"""SGL programs written once, loaded under either frontend (`import sglang as sgl` or `import nbinfer
as sgl`): the server and remote-backend tests run the same source on both sides."""
import importlib
import sys
import textwrap

PROGRAMS = '''
{import_line}


@sgl.function
def story(s, name):
    s += "Once upon a time, there was a little dog named " + name + "."
    s += sgl.gen("story", max_tokens=24, stop=".")


@sgl.function
def chat(s, question):
    s += sgl.system("You are a storyteller.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=32))
    s += sgl.user("Tell me more.")
    s += sgl.assistant(sgl.gen("more", max_tokens=16))


@sgl.function
def pick(s):
    s += "One sunny day, there was a curious girl named Lily. She saw a"
    s += sgl.select("animal", choices=[" big dog", " moon", " xylophone quantum"])
    s += ". The end."


@sgl.function
def number(s):
    s += "Long ago, there was a brave bunny named Tom. Tom was "
    s += sgl.gen("age", max_tokens=6, regex="[0-9]{{1,2}}")
    s += " years old."


@sgl.function
def branches(s):
    s += "Once upon a time, there was a little cat named Mia."
    forks = s.fork(2)
    forks += [" One day, Mia", " Mia liked to"]
    forks += sgl.gen("next", max_tokens=12)
    forks.join()
    s += " And then" + sgl.gen("end", max_tokens=8)
    return [f["next"] for f in forks]
'''


def load_programs(tmp_path, module_name, import_line):
    path = tmp_path / f"{module_name}.py"
    path.write_text(textwrap.dedent(PROGRAMS.format(import_line=import_line)))
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module(module_name)
    finally:
        sys.path.remove(str(tmp_path))
