"""The SGL language: programs with control flow whose gen / select calls run on the engine.

    import nbinfer as sgl

    @sgl.function
    def qa(s, question):
        s += sgl.user(question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=64))

Layout: expr.py (what `s += ...` appends), ir.py + compiler.py (body -> instruction flow),
interpreter.py (runs the flow), executor.py + state.py (a program's text, variables, forks),
backend.py (where requests go), constraints.py (regex / JSON-schema decoding), api.py (SGLang's API).
"""
from .api import *  # noqa: F401,F403
from .api import __all__  # noqa: F401
