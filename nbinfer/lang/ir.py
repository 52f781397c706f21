"""The compiled instruction flow of an SGL program, and its readable listing (`fn.ir()`).

The compiler (compiler.py) lowers a program body into these instructions; the interpreter
(interpreter.py) walks them. Statements that do not touch the program state stay host Python,
compiled once (`Code`) and executed in the program's namespace. Every instruction keeps its source
line so runtime errors and listings point at the cell / file line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import CodeType


@dataclass(frozen=True)
class Code:
    """A compiled host-Python expression ("eval") or statement ("exec") and its source text."""
    src: str
    code: CodeType = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.src


@dataclass
class Instr:
    line: int
    col: int


# -- appending to a state -------------------------------------------------------------------------
# `target` is None for the program's own state (`s`); AppendTo names another one (a fork).
@dataclass
class AppendText(Instr):
    target: Code | None
    text: str


@dataclass
class AppendValue(Instr):
    """A host expression whose value (str, or an SGL expression) is appended."""
    target: Code | None
    value: Code


@dataclass
class Gen(Instr):
    target: Code | None
    call: Code              # evaluates to an SglGen: the user's gen(...) call, or s.generate(...)
    name: str | None
    args: str               # its arguments, for the listing


@dataclass
class Select(Instr):
    target: Code | None
    call: Code
    name: str | None
    args: str


@dataclass
class RoleBegin(Instr):
    target: Code | None
    role: str


@dataclass
class RoleEnd(Instr):
    target: Code | None
    role: str


@dataclass
class VarScopeBegin(Instr):
    target: Code | None
    name: Code


@dataclass
class VarScopeEnd(Instr):
    target: Code | None
    name: Code


@dataclass
class AppendTo(Instr):
    """`x += ...` where x is not the program's state: its parts go to x when x is a program state or
    a fork group at run time; otherwise the statement runs as the plain Python it is (`fallback`)."""
    target: Code
    parts: list[Instr]
    fallback: Code


# -- fork / join ----------------------------------------------------------------------------------
@dataclass
class Fork(Instr):
    assign: Code            # `<target> = __sgl_value__`
    target: str
    call: Code              # `s.fork(...)`


@dataclass
class Join(Instr):
    group: Code
    call: Code              # the whole `forks.join(...)` call


# -- control flow ---------------------------------------------------------------------------------
@dataclass
class Branch:
    line: int
    cond: Code
    body: list[Instr]


@dataclass
class If(Instr):
    branches: list[Branch]          # the `if` and its `elif`s, tried in order
    orelse: list[Instr]


@dataclass
class For(Instr):
    assign: Code            # `<target> = __sgl_value__`
    target: str
    iter: Code
    body: list[Instr]
    orelse: list[Instr]


@dataclass
class While(Instr):
    cond: Code
    body: list[Instr]
    orelse: list[Instr]


@dataclass
class Break(Instr):
    pass


@dataclass
class Continue(Instr):
    pass


@dataclass
class Return(Instr):
    value: Code | None


@dataclass
class Handler:
    line: int
    type: Code | None
    name: str | None
    body: list[Instr]


@dataclass
class Try(Instr):
    body: list[Instr]
    handlers: list[Handler]
    orelse: list[Instr]
    finalbody: list[Instr]


@dataclass
class With(Instr):
    """A host context manager around a body that touches the state or returns."""
    manager: Code
    assign: Code | None     # `<target> = __sgl_value__` for `as target`
    body: list[Instr]


@dataclass
class Host(Instr):
    """Plain Python: runs as written, in the program's namespace."""
    stmt: Code


# -- a whole program ------------------------------------------------------------------------------
@dataclass
class Program:
    name: str
    params: list[str]               # after the state parameter
    state_name: str
    body: list[Instr]
    where: str                      # "cell" or a file name, for messages
    filename: str

    def listing(self) -> str:
        head = f"program {self.name}({', '.join([self.state_name, *self.params])})   # {self.where}"
        lines = [head]
        _list_block(self.body, 1, lines)
        return "\n".join(lines)


def _q(text: str, limit: int = 60) -> str:
    r = repr(text)
    return r if len(r) <= limit else r[:limit - 4] + "...'"


def _target(code: Code | None) -> str:
    return "" if code is None else f"  -> {code.src}"


def _list_block(body: list[Instr], depth: int, out: list[str]) -> None:
    pad = "  " * depth

    def clause(header: str, block: list[Instr]) -> None:
        """An unnumbered else/finally line (the listing keeps no line for it) and its block."""
        if block:
            out.append(f"{'':5} {pad}{header}")
            _list_block(block, depth + 1, out)

    for ins in body:
        row = lambda text, line=ins.line: out.append(f"{line:5d} {pad}{text}")   # noqa: E731
        if isinstance(ins, AppendText):
            row(f"text     {_q(ins.text)}{_target(ins.target)}")
        elif isinstance(ins, AppendValue):
            row(f"append   {ins.value}{_target(ins.target)}")
        elif isinstance(ins, Gen):
            row(f"gen      {ins.name or '-'}  {ins.args}{_target(ins.target)}".rstrip())
        elif isinstance(ins, Select):
            row(f"select   {ins.name or '-'}  {ins.args}{_target(ins.target)}".rstrip())
        elif isinstance(ins, RoleBegin):
            row(f"role     {ins.role} begin{_target(ins.target)}")
        elif isinstance(ins, RoleEnd):
            row(f"role     {ins.role} end{_target(ins.target)}")
        elif isinstance(ins, VarScopeBegin):
            row(f"scope    {ins.name} begin{_target(ins.target)}")
        elif isinstance(ins, VarScopeEnd):
            row(f"scope    {ins.name} end{_target(ins.target)}")
        elif isinstance(ins, AppendTo):
            _list_block(ins.parts, depth, out)
        elif isinstance(ins, Fork):
            row(f"fork     {ins.target} = {ins.call}")
        elif isinstance(ins, Join):
            row(f"join     {ins.call}")
        elif isinstance(ins, If):
            for i, b in enumerate(ins.branches):
                out.append(f"{b.line:5d} {pad}{'if' if i == 0 else 'elif':<8} {b.cond}")
                _list_block(b.body, depth + 1, out)
            clause("else", ins.orelse)
        elif isinstance(ins, For):
            row(f"for      {ins.target} in {ins.iter}")
            _list_block(ins.body, depth + 1, out)
            clause("else", ins.orelse)
        elif isinstance(ins, While):
            row(f"while    {ins.cond}")
            _list_block(ins.body, depth + 1, out)
            clause("else", ins.orelse)
        elif isinstance(ins, Break):
            row("break")
        elif isinstance(ins, Continue):
            row("continue")
        elif isinstance(ins, Return):
            row(f"return   {ins.value or ''}".rstrip())
        elif isinstance(ins, Try):
            row("try")
            _list_block(ins.body, depth + 1, out)
            for h in ins.handlers:
                what = f" {h.type}" if h.type else ""
                out.append(f"{h.line:5d} {pad}except{what}{' as ' + h.name if h.name else ''}")
                _list_block(h.body, depth + 1, out)
            clause("else", ins.orelse)
            clause("finally", ins.finalbody)
        elif isinstance(ins, With):
            row(f"with     {ins.manager}")
            _list_block(ins.body, depth + 1, out)
        elif isinstance(ins, Host):
            first = ins.stmt.src.splitlines()[0] if ins.stmt.src else ""
            more = " ..." if "\n" in ins.stmt.src else ""
            row(f"python   {first}{more}")
        else:   # pragma: no cover - every instruction type is listed above
            row(type(ins).__name__)


class IRListing(str):
    """The listing; shows as plain text (not a quoted string) in a notebook's Out[]."""

    def __repr__(self) -> str:
        return str(self)
