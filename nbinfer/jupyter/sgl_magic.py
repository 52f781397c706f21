"""%%sgl: SGL programs in a cell.

    %%sgl [--out VAR] [--show-ir] [--temperature T] [--max-tokens N] [--arg NAME=VALUE]...

A cell of statements on `s` runs now (its text streams into the output) and its ProgramState is
bound to VAR (or is the cell's value). A cell of @function / @instruct definitions makes them
callable programs in the notebook. Cell semantics live in nbinfer.lang.cell; this is the IPython side.
"""
from __future__ import annotations

import argparse
import ast
import sys

from IPython.core.error import UsageError

from nbinfer.lang.backends import as_backend, get_default_backend, register_fallback_backend
from nbinfer.lang.cell import SglCell
from nbinfer.lang.errors import SglError, describe_error
from nbinfer.lang.program import interrupt_run, report_interrupts_with
from nbinfer.lang.sampling import RunDefaults

from . import session
from ..flags.argtypes import float_in, identifier, int_min
from .interrupts import cancelled_interrupt, one_line_interrupt
from .magic_parser import MagicParser

USAGE = "%%sgl [--out VAR] [--show-ir] [--temperature T] [--max-tokens N] [--arg NAME=VALUE]..."


def _program_arg(text: str) -> tuple[str, object]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)     # numbers, lists, quoted strings ...
    except (ValueError, SyntaxError):
        return name, value                       # ... anything else is the text itself


def _parser() -> MagicParser:
    p = MagicParser(prog="%%sgl", hint=f"usage: {USAGE}")
    p.add_argument("--out", type=identifier, metavar="VAR")
    p.add_argument("--show-ir", action="store_true")
    p.add_argument("--temperature", type=float_in(0), metavar="T")
    p.add_argument("--max-tokens", type=int_min(1), metavar="N")
    p.add_argument("--arg", type=_program_arg, action="append", default=[], metavar="NAME=VALUE")
    return p


def parse_line(line: str) -> argparse.Namespace:
    return _parser().parse_line(line)


def _backend():
    """The remote server `%nbinfer connect` named; else the notebook's engine; else a default backend
    set with sgl.set_default_backend / SGLModel; else the notebook's engine loads its default model."""
    remote = session.current_remote()
    if remote is not None:
        return as_backend(remote)
    llm = session.current_llm()
    if llm is not None:
        return as_backend(llm)
    default = get_default_backend()
    if default is not None:
        return default
    return as_backend(session.get_llm())


def sgl_cell(line: str, cell: str, shell) -> object:
    opts = parse_line(line)
    ns = shell.user_ns
    # line 1 of the cell is the `%%sgl` line: number the body from 2, as the notebook shows it
    sgl = SglCell("\n" + cell, ns)      # a compile error renders as one line naming cell line / column

    if not sgl.is_program:
        program_only = [flag for flag, on in (("--out", opts.out), ("--arg", opts.arg),
                                              ("--temperature", opts.temperature is not None),
                                              ("--max-tokens", opts.max_tokens)) if on]
        if program_only:
            raise UsageError(f"%%sgl: {', '.join(program_only)} only apply to a program cell (statements on "
                             "`s`); this cell defines programs")
        defined = sgl.define()
        if opts.show_ir:
            for name in defined:
                print(ns[name].ir())
        return None

    if opts.show_ir:
        print(sgl.listing())
    defaults = RunDefaults.make(
        **({"temperature": opts.temperature} if opts.temperature is not None else {}),
        **({"max_new_tokens": opts.max_tokens} if opts.max_tokens is not None else {}))
    state = sgl.prepare(_backend(), defaults, dict(opts.arg), stream=True)
    wrote = ""
    try:                                        # from before its first request can be sent
        sgl.start(state)
        for chunk in state.text_iter():         # the program's text as it is generated
            sys.stdout.write(chunk)
            sys.stdout.flush()
            wrote = chunk or wrote
    except KeyboardInterrupt:
        # its requests are aborted and their KV blocks freed, and it has stopped, before this line
        raise program_interrupt(*interrupt_run(state)) from None
    except SglError:
        raise
    except Exception as e:                      # the program's own error: one line, with its cell line
        raise SglError(describe_error(e)) from e
    finally:
        if wrote and not wrote.endswith("\n"):
            print()
        sgl.commit()
        if opts.out:
            ns[opts.out] = state
    return None if opts.out else state


def program_interrupt(cancelled: int, stopped: bool) -> KeyboardInterrupt:
    """Ctrl-C of a program (a %%sgl cell, f.run() / run_batch() in a notebook) in one line, as
    %%generate's; still a KeyboardInterrupt, so Run All stops there."""
    if stopped and not cancelled:
        return one_line_interrupt("interrupted: the program stopped; none of its requests was running")
    return cancelled_interrupt(cancelled)      # 0: the click came after the program had finished


def register(ipython) -> None:
    """Called by nbinfer's IPython extension (`%load_ext nbinfer`)."""
    # programs run outside %%sgl cells (f.run() in a Python cell) find the connected server or the
    # notebook's engine too, when no default backend is set; current_target never loads one
    register_fallback_backend(session.current_target)
    report_interrupts_with(program_interrupt)   # and an interrupted f.run() shows one line too

    def sgl(line, cell):
        return sgl_cell(line, cell, ipython)
    sgl.__doc__ = __doc__
    ipython.register_magic_function(sgl, magic_kind="cell", magic_name="sgl")
