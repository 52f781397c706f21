"""Interpreter: walks a compiled instruction flow against a ProgramState.

Host Python runs in the one namespace per program run that the caller builds (for an @function:
the SGL names, its globals, closure and arguments), so comprehensions, lambdas and helper functions
see what they would see in Python. Errors keep their type; each gets a note naming the program line
it came from.
"""
from __future__ import annotations

import operator
import sys
from typing import Any

from . import ir
from .compiler import VALUE
from .errors import ProgramCancelled
from .expr import SglRoleBegin, SglRoleEnd, SglVarScopeBegin, SglVarScopeEnd
from .state import ProgramReturn, ProgramState, ProgramStateGroup

BREAK, CONTINUE = object(), object()


class _Return:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class Frame:
    __slots__ = ("program", "state", "ns")

    def __init__(self, program: ir.Program, state: ProgramState, ns: dict):
        self.program, self.state, self.ns = program, state, ns


def run_program(program: ir.Program, state: ProgramState, ns: dict) -> Any:
    """Execute the flow; returns the program's return value."""
    ns[program.state_name] = state
    sig = _block(program.body, Frame(program, state, ns))
    return sig.value if isinstance(sig, _Return) else None


def _block(body: list[ir.Instr], f: Frame):
    for ins in body:
        try:
            sig = _EXEC[type(ins)](ins, f)
        except ProgramReturn as r:
            return _Return(r.value)
        except (KeyboardInterrupt, ProgramCancelled, SystemExit):
            raise
        except BaseException as e:
            _note_location(e, f.program, ins)
            raise
        if sig is not None:
            return sig
    return None


def _note_location(e: BaseException, program: ir.Program, ins: ir.Instr) -> None:
    if getattr(e, "_sgl_where", None) is None:
        where = f"{program.where} line {ins.line}"
        try:
            e._sgl_where = where
            e.add_note(f"(in SGL program {program.name}, {where})")
        except (AttributeError, TypeError):
            pass


def _eval(code: ir.Code, f: Frame):
    return eval(code.code, f.ns)


def _assign(code: ir.Code, value, f: Frame) -> None:
    f.ns[VALUE] = value
    try:
        exec(code.code, f.ns)
    finally:
        f.ns.pop(VALUE, None)


# -- appending ------------------------------------------------------------------------------------
def _part_value(ins: ir.Instr, f: Frame):
    t = type(ins)
    if t is ir.AppendText:
        return ins.text
    if t is ir.AppendValue or t is ir.Gen or t is ir.Select:
        return _eval(ins.value if t is ir.AppendValue else ins.call, f)
    if t is ir.RoleBegin:
        return SglRoleBegin(ins.role)
    if t is ir.RoleEnd:
        return SglRoleEnd(ins.role)
    if t is ir.VarScopeBegin:
        return SglVarScopeBegin(_eval(ins.name, f))
    return SglVarScopeEnd(_eval(ins.name, f))


def _append(ins, f: Frame):
    target = f.state if ins.target is None else _eval(ins.target, f)
    operator.iadd(target, _part_value(ins, f))


def _append_to(ins: ir.AppendTo, f: Frame):
    target = _eval(ins.target, f)
    if not isinstance(target, (ProgramState, ProgramStateGroup)):
        exec(ins.fallback.code, f.ns)
        return None
    for part in ins.parts:
        try:
            operator.iadd(target, _part_value(part, f))
        except (KeyboardInterrupt, ProgramCancelled, ProgramReturn):
            raise
        except BaseException as e:
            _note_location(e, f.program, part)
            raise
    return None


# -- forks ----------------------------------------------------------------------------------------
def _fork(ins: ir.Fork, f: Frame):
    _assign(ins.assign, _eval(ins.call, f), f)


def _join(ins: ir.Join, f: Frame):
    _eval(ins.call, f)


# -- control flow ---------------------------------------------------------------------------------
def _if(ins: ir.If, f: Frame):
    for branch in ins.branches:
        if _eval(branch.cond, f):
            return _block(branch.body, f)
    return _block(ins.orelse, f)


def _loop_body(body, f: Frame):
    """(stop the loop, signal to pass up)."""
    sig = _block(body, f)
    if sig is BREAK:
        return True, None
    if sig is CONTINUE or sig is None:
        return False, None
    return True, sig       # a return


def _for(ins: ir.For, f: Frame):
    for item in _eval(ins.iter, f):
        _assign(ins.assign, item, f)
        stop, sig = _loop_body(ins.body, f)
        if stop:
            return sig
    return _block(ins.orelse, f)


def _while(ins: ir.While, f: Frame):
    while _eval(ins.cond, f):
        stop, sig = _loop_body(ins.body, f)
        if stop:
            return sig
    return _block(ins.orelse, f)


def _try(ins: ir.Try, f: Frame):
    try:
        try:
            sig = _block(ins.body, f)
        except ProgramCancelled as e:       # only a handler naming it may catch a cancellation
            if not any(h.type is not None and isinstance(e, _eval(h.type, f)) for h in ins.handlers):
                raise
            return _handle(ins, e, f)
        except BaseException as e:
            return _handle(ins, e, f)
        if sig is None:
            sig = _block(ins.orelse, f)
        return sig
    finally:
        final = _block(ins.finalbody, f)
        if final is not None:
            return final    # noqa: B012 - a return/break in `finally` wins, as in Python


def _handle(ins: ir.Try, e: BaseException, f: Frame):
    for h in ins.handlers:
        if h.type is None or isinstance(e, _eval(h.type, f)):
            if h.name:
                f.ns[h.name] = e
            try:
                return _block(h.body, f)
            finally:
                if h.name:
                    f.ns.pop(h.name, None)
    raise e


def _with(ins: ir.With, f: Frame):
    manager = _eval(ins.manager, f)
    enter, exit_ = type(manager).__enter__, type(manager).__exit__
    value = enter(manager)
    if ins.assign is not None:
        _assign(ins.assign, value, f)
    try:
        sig = _block(ins.body, f)
    except BaseException:
        if not exit_(manager, *sys.exc_info()):
            raise
        return None
    exit_(manager, None, None, None)
    return sig


def _return(ins: ir.Return, f: Frame):
    return _Return(_eval(ins.value, f) if ins.value is not None else None)


def _host(ins: ir.Host, f: Frame):
    exec(ins.stmt.code, f.ns)


_EXEC = {
    ir.AppendText: _append, ir.AppendValue: _append, ir.Gen: _append, ir.Select: _append,
    ir.RoleBegin: _append, ir.RoleEnd: _append, ir.VarScopeBegin: _append, ir.VarScopeEnd: _append,
    ir.AppendTo: _append_to, ir.Fork: _fork, ir.Join: _join, ir.If: _if, ir.For: _for, ir.While: _while,
    ir.Break: lambda ins, f: BREAK, ir.Continue: lambda ins, f: CONTINUE, ir.Return: _return,
    ir.Try: _try, ir.With: _with, ir.Host: _host,
}
