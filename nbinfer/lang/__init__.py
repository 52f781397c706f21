"""The SGL language: programs with control flow whose gen / select calls run on the engine.

    import nbinfer as sgl

    @sgl.function
    def qa(s, question):
        s += sgl.user(question)
        s += sgl.assistant(sgl.gen("answer", max_tokens=64))

Layout, bottom up (a module imports only modules below it): primitives.py + expr.py (what
`s += ...` appends; reasoning.py: separate_reasoning's formats), ir.py + compiler.py (body ->
instruction flow), backends/ (where requests go, which one a run uses, sgl.Runtime), executor.py + state.py (a program's text, variables, forks), interpreter.py
(runs the flow), program.py (@function and a run's lifecycle), cell.py (a %%sgl cell), api.py (the
SGLang-compatible names, a facade).
"""
from .api import *  # noqa: F401,F403
from .api import __all__  # noqa: F401
