"""A %%sgl cell's semantics, independent of IPython (the magic in nbinfer/jupyter/sgl_magic.py is a
thin layer over this).

A cell is either
  - a program: its top-level statements use `s` -- it runs now, on a fresh state, with the notebook's
    names, gen / select / roles in scope, and names it assigns land in the notebook like a cell's; or
  - definitions: @function / @instruct programs (and any other Python) -- executed as a cell, so the
    programs become callable in the notebook; the seed's `s.if_(...):` forms work inside them.
The cell's text is registered with linecache under its own name, so tracebacks and the programs'
source (which the compiler reads back) point at cell lines.
"""
from __future__ import annotations

import ast
import itertools
import linecache
from typing import Any

from . import interpreter
from .compiler import (STATE_GEN, STATE_SELECT, VALUE, _walk_same_scope, compile_program_source, compile_tree,
                       parse_cell)
from .context import ProgramRun
from .executor import StateExecutor
from .program import SglFunction, program_names, start_run
from .sampling import RunDefaults
from .state import ProgramState

_cell_numbers = itertools.count(1)
STATE = "s"


class SglCell:
    def __init__(self, source: str, namespace: dict, filename: str | None = None):
        self.source = source
        self.namespace = namespace
        self.filename = filename or f"<sgl-cell-{next(_cell_numbers)}>"
        linecache.cache[self.filename] = (len(source), None, source.splitlines(keepends=True), self.filename)
        self.tree = parse_cell(source, self.filename)
        self.is_program = _uses_state(self.tree)
        self.program = compile_program_source(source, self.filename) if self.is_program else None
        # a definitions cell is compiled now, so Python's compile errors are one line like the program's
        self.code = None if self.is_program else compile_tree(self.tree, self.filename, "exec", self.tree._sgl_lines)
        self._ns: dict | None = None
        self._before: dict | None = None
        self._injected: dict = {}

    def listing(self) -> str:
        return self.program.listing() if self.program is not None else ""

    # -- definitions ------------------------------------------------------------------------------
    def define(self) -> list[str]:
        """Execute a definitions cell; returns the names of the programs it (re)defined."""
        ns = self.namespace
        before = {k: v for k, v in ns.items() if isinstance(v, SglFunction)}
        injected = {k: v for k, v in program_names().items() if k not in ns and not k.startswith("__")}
        ns.update(injected)         # @instruct / @function without an import, for this cell only
        try:
            exec(self.code, ns)
        finally:
            for k, v in injected.items():
                if ns.get(k) is v:
                    del ns[k]
        return [k for k, v in ns.items() if isinstance(v, SglFunction) and before.get(k) is not v]

    # -- a program --------------------------------------------------------------------------------
    def prepare(self, backend, defaults: RunDefaults, args: dict[str, Any] | None = None,
                stream: bool = False) -> ProgramState:
        """A fresh state for the cell's program; nothing runs and nothing is sent until start(state).
        (Two steps so a caller holds the state -- to cancel it -- before the first request can go.)"""
        run = ProgramRun(backend, defaults, "cell")
        self._injected = program_names()
        ns = dict(self._injected)
        ns.update(self.namespace)
        ns.update(args or {})
        self._ns = ns
        self._before = dict(ns)
        return ProgramState(StateExecutor(run), stream=stream)

    def start(self, state: ProgramState) -> ProgramState:
        """Run the program on the state prepare() made (now, or streaming on its own thread)."""
        ns = self._ns
        return start_run(state, lambda: interpreter.run_program(self.program, state, ns))

    def commit(self) -> None:
        """Names the program assigned (or deleted) at top level land in the notebook namespace."""
        if self._ns is None:
            return
        skip = {STATE, VALUE, STATE_GEN, STATE_SELECT, "__builtins__"}
        for k, v in self._ns.items():
            if k in skip or (k in self._injected and v is self._injected[k]):
                continue
            if k not in self._before or self._before[k] is not v:
                self.namespace[k] = v
        for k in self._before:
            if k not in self._ns and k not in skip:
                self.namespace.pop(k, None)
        self._ns = None


def _uses_state(tree: ast.Module) -> bool:
    """Does the cell's own code (not the functions it defines) use `s`?"""
    return any(isinstance(node, ast.Name) and node.id == STATE
               for stmt in tree.body for node in _walk_same_scope(stmt))
