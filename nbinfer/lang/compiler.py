"""Compiler: a program body (an @function / @instruct function, or a %%sgl cell) -> instruction flow.

Python's `ast` does the parsing, after a pre-pass that turns the seed's `s.if_(...):` block forms
into plain `if` (pseudo_syntax.py). The lowering rule is simple: statements that act on the state
(`s += ...`, `s.generate(...)`, `with s.user():`, `s.fork(...)`, `forks[i] += ...`, `forks.join()`,
`s.return_(...)`) become instructions; compound statements (if / for / while / try / with) become
control-flow instructions when something inside them must be (a state action, a `return`, or a
`break` / `continue` leaving them); everything else stays host Python, compiled once and run as written.

What cannot be expressed is a compile error naming the line and column: `yield` / `await`,
`global` / `nonlocal`, rebinding the state variable, misused pseudo-syntax.
"""
from __future__ import annotations

import ast
import copy
import inspect
import os
import textwrap

from . import ir
from .errors import SglCompileError
from .pseudo_syntax import rewrite_pseudo_syntax

VALUE = "__sgl_value__"            # assignment helpers read the value to bind from this name
STATE_GEN = "__sgl_state_gen__"    # s.generate(...) / s.select(...) are compiled as calls to these
STATE_SELECT = "__sgl_state_select__"

_GEN_FUNCS = {"gen", "gen_int", "gen_string"}
_SELECT_FUNCS = {"select"}
_ROLES = {"system", "user", "assistant"}
_ROLE_EDGES = {f"{r}_{edge}": (r, edge) for r in _ROLES for edge in ("begin", "end")}
_SGL_FUNCS = _GEN_FUNCS | _SELECT_FUNCS | _ROLES | set(_ROLE_EDGES)
_PSEUDO = {"if_", "elif_", "else_", "while_"}
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)


def where_of(filename: str) -> str:
    """How messages name a source: "cell" for notebook cells, else the file's name."""
    if filename.startswith(("<sgl-cell", "<ipython-input")) or "ipykernel_" in filename:
        return "cell"
    return os.path.basename(filename) if not filename.startswith("<") else filename


def compile_function(fn) -> ir.Program | None:
    """The program a decorated function's source describes; None when its source is unavailable
    (the function then runs as plain Python against the same runtime API)."""
    if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        raise SglCompileError("an SGL program must be a plain function (not async, not a generator)",
                              where_of(fn.__code__.co_filename), fn.__code__.co_firstlineno, 1)
    try:
        lines, first = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return None
    filename = fn.__code__.co_filename
    source = "".join(lines)
    indent = len(lines[0]) - len(lines[0].lstrip())
    tree = _parse(textwrap.dedent(source), filename, line_offset=first - 1, col_offset=indent)
    fdef = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == fn.__name__), None)
    if fdef is None:        # a lambda, or source that moved: run it as plain Python
        return None
    args = fdef.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    if not positional:
        raise SglCompileError(f"program {fn.__name__}() needs the state as its first parameter, e.g. "
                              f"def {fn.__name__}(s, ...)", where_of(filename), fdef.lineno, fdef.col_offset + 1)
    state = positional[0]
    params = positional[1:] + [a.arg for a in args.kwonlyargs]
    lowerer = _Lowerer(filename, state, tree._sgl_lines, first - 1, indent)
    body = lowerer.block(fdef.body)
    return ir.Program(fn.__name__, params, state, body, where_of(filename), filename)


def compile_program_source(source: str, filename: str, name: str = "cell", state: str = "s",
                           params: tuple[str, ...] = ()) -> ir.Program:
    """A %%sgl cell of bare statements on `s`."""
    tree = _parse(source, filename)
    body = _Lowerer(filename, state, tree._sgl_lines, 0, 0, top_level=True).block(tree.body)
    return ir.Program(name, list(params), state, body, where_of(filename), filename)


def parse_cell(source: str, filename: str) -> ast.Module:
    """The cell's ast after the pseudo-syntax pre-pass (line numbers are the cell's)."""
    return _parse(source, filename)


def _parse(source: str, filename: str, line_offset: int = 0, col_offset: int = 0) -> ast.Module:
    text = rewrite_pseudo_syntax(source)
    try:
        tree = ast.parse(text, filename)
    except SyntaxError as e:
        line = (e.lineno or 1) + line_offset
        col = (e.offset or 1) + (col_offset if e.lineno else 0)
        raise SglCompileError(f"invalid syntax: {e.msg}", where_of(filename), line, col) from None
    if line_offset:
        ast.increment_lineno(tree, line_offset)
    tree._sgl_lines = text.splitlines()
    return tree


def compile_tree(tree: ast.AST, filename: str, mode: str, lines: list[str], line_offset: int = 0,
                 col_offset: int = 0):
    """compile(tree); what only Python's compiler refuses (a `break` outside a loop, a `nonlocal`
    without a binding, a `yield` in a comprehension) becomes an SglCompileError naming the line and
    column, as the parser's errors do. `lines`: the source the tree's positions refer to."""
    try:
        return compile(tree, filename, mode)
    except SyntaxError as e:
        line = e.lineno or line_offset + 1
        # compiling a tree, Python reports a 1-based UTF-8 byte offset
        col = char_column(lines, line - line_offset, (e.offset or 1) - 1) + col_offset
        raise SglCompileError(e.msg, where_of(filename), line, col) from None


def char_column(lines: list[str], line: int, byte_offset: int) -> int:
    """The 1-based character column of a 0-based UTF-8 byte offset (what ast reports) on `line`
    (1-based) of `lines`."""
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return len(text.encode()[:byte_offset].decode("utf-8", errors="ignore")) + 1


class _Lowerer:
    def __init__(self, filename: str, state: str, lines: list[str], line_offset: int, col_offset: int,
                 top_level: bool = False):
        self.filename = filename
        self.where = where_of(filename)
        self.state = state
        self.lines = lines
        self.line_offset = line_offset
        self.col_offset = col_offset
        self.top_level = top_level
        self.fork_names: set[str] = set()

    # -- errors and code objects ------------------------------------------------------------------
    def _column(self, node: ast.AST) -> int:
        return char_column(self.lines, node.lineno - self.line_offset, node.col_offset) + self.col_offset

    def error(self, node: ast.AST, what: str) -> SglCompileError:
        return SglCompileError(what, self.where, node.lineno, self._column(node))

    def _compile(self, tree: ast.AST, mode: str):
        ast.fix_missing_locations(tree)
        return compile_tree(tree, self.filename, mode, self.lines, self.line_offset, self.col_offset)

    def expr(self, node: ast.expr) -> ir.Code:
        return ir.Code(ast.unparse(node), self._compile(ast.Expression(node), "eval"))

    def stmts(self, nodes: list[ast.stmt]) -> ir.Code:
        code = self._compile(ast.Module(nodes, type_ignores=[]), "exec")
        return ir.Code("\n".join(ast.unparse(n) for n in nodes), code)

    def assign(self, target: ast.expr, at: ast.AST) -> ir.Code:
        stmt = ast.copy_location(ast.Assign([target], ast.copy_location(ast.Name(VALUE, ast.Load()), at)), at)
        return self.stmts([stmt])

    def _pos(self, node: ast.AST) -> tuple[int, int]:
        return node.lineno, self._column(node)

    # -- blocks -----------------------------------------------------------------------------------
    def block(self, body: list[ast.stmt], in_loop: bool = False) -> list[ir.Instr]:
        out: list[ir.Instr] = []
        for stmt in body:
            out.extend(self.statement(stmt, in_loop))
        return out

    def statement(self, stmt: ast.stmt, in_loop: bool) -> list[ir.Instr]:
        self._check_supported(stmt)
        action = self._state_action(stmt, in_loop)
        if action is not None:
            return action
        if isinstance(stmt, (ast.Break, ast.Continue)):
            if not in_loop:
                raise self.error(stmt, f"'{'break' if isinstance(stmt, ast.Break) else 'continue'}' outside a loop")
            return [(ir.Break if isinstance(stmt, ast.Break) else ir.Continue)(*self._pos(stmt))]
        if isinstance(stmt, ast.Return):
            value = self.expr(stmt.value) if stmt.value is not None else None
            return [ir.Return(*self._pos(stmt), value)]
        if not self._must_lower(stmt):
            return [ir.Host(*self._pos(stmt), self.stmts([stmt]))]
        if isinstance(stmt, ast.If):
            return [self._if(stmt, in_loop)]
        if isinstance(stmt, ast.For):
            return [ir.For(*self._pos(stmt), self.assign(stmt.target, stmt), _target_text(stmt.target),
                           self.expr(stmt.iter), self.block(stmt.body, True), self.block(stmt.orelse, in_loop))]
        if isinstance(stmt, ast.While):
            return [ir.While(*self._pos(stmt), self.expr(stmt.test), self.block(stmt.body, True),
                             self.block(stmt.orelse, in_loop))]
        if isinstance(stmt, ast.Try):
            handlers = [ir.Handler(h.lineno, self.expr(h.type) if h.type is not None else None, h.name,
                                   self.block(h.body, in_loop)) for h in stmt.handlers]
            return [ir.Try(*self._pos(stmt), self.block(stmt.body, in_loop), handlers,
                           self.block(stmt.orelse, in_loop), self.block(stmt.finalbody, in_loop))]
        if isinstance(stmt, ast.With):
            return [self._with(stmt, stmt.items, in_loop)]
        kind = type(stmt).__name__.lower()
        raise self.error(stmt, f"a '{kind}' statement that acts on the program state, returns, or breaks out "
                               "is not supported here; move that part out of it")

    def _if(self, stmt: ast.If, in_loop: bool) -> ir.If:
        branches = [ir.Branch(stmt.lineno, self.expr(stmt.test), self.block(stmt.body, in_loop))]
        orelse = stmt.orelse
        # `elif` is an If alone in the orelse; its line says "elif" in the source
        while len(orelse) == 1 and isinstance(orelse[0], ast.If) and self._is_elif(orelse[0]):
            node = orelse[0]
            self._check_supported(node)
            branches.append(ir.Branch(node.lineno, self.expr(node.test), self.block(node.body, in_loop)))
            orelse = node.orelse
        return ir.If(*self._pos(stmt), branches, self.block(orelse, in_loop))

    def _is_elif(self, node: ast.If) -> bool:
        i = node.lineno - self.line_offset - 1
        return 0 <= i < len(self.lines) and self.lines[i].lstrip().startswith("elif")

    def _with(self, stmt: ast.With, items: list[ast.withitem], in_loop: bool) -> ir.With:
        item = items[0]
        inner = (self.block(stmt.body, in_loop) if len(items) == 1
                 else [self._with(stmt, items[1:], in_loop)])
        assign = self.assign(item.optional_vars, stmt) if item.optional_vars is not None else None
        return ir.With(*self._pos(stmt), self.expr(item.context_expr), assign, inner)

    # -- what must be lowered ---------------------------------------------------------------------
    def _must_lower(self, stmt: ast.stmt) -> bool:
        """stmt holds a state action, a return, or a break/continue that leaves it."""
        return self._scan(stmt, loop_inside=False)

    def _scan(self, stmt: ast.stmt, loop_inside: bool) -> bool:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            return False
        if isinstance(stmt, ast.Return) or (isinstance(stmt, (ast.Break, ast.Continue)) and not loop_inside):
            return True
        if self._is_state_action(stmt):
            return True
        loops = (ast.For, ast.While, ast.AsyncFor)
        for name in ("body", "orelse", "finalbody"):
            inside = loop_inside or (isinstance(stmt, loops) and name == "body")
            if any(self._scan(s, inside) for s in getattr(stmt, name, ()) or ()):
                return True
        for h in getattr(stmt, "handlers", ()) or ():
            if any(self._scan(s, loop_inside) for s in h.body):
                return True
        for case in getattr(stmt, "cases", ()) or ():
            if any(self._scan(s, loop_inside) for s in case.body):
                return True
        return False

    def _is_state_action(self, stmt: ast.stmt) -> bool:
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            f = stmt.value.func
            if self._on_state(f) and f.attr in {"generate", "gen", "select", "return_"} | _PSEUDO:
                return True
            if isinstance(f, ast.Attribute) and f.attr == "join" and isinstance(f.value, ast.Name) \
                    and f.value.id in self.fork_names:
                return True
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, ast.Add):
            return self._is_state(stmt.target) or self._is_fork_item(stmt.target) or _has_sgl_call(stmt.value)
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name) \
                and isinstance(stmt.value, ast.Call) and self._on_state(stmt.value.func) \
                and stmt.value.func.attr == "fork":
            return True
        if isinstance(stmt, ast.With) and len(stmt.items) == 1 and stmt.items[0].optional_vars is None:
            ctx = stmt.items[0].context_expr
            return isinstance(ctx, ast.Call) and self._on_state(ctx.func) and \
                ctx.func.attr in _ROLES | {"var_scope"}
        return False

    def _is_state(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id == self.state

    def _is_fork_item(self, node: ast.expr) -> bool:
        """`forks[i]` where `forks = s.fork(...)` came earlier in the program."""
        return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
            and node.value.id in self.fork_names

    def _on_state(self, func: ast.expr) -> bool:
        return isinstance(func, ast.Attribute) and self._is_state(func.value)

    # -- state actions ----------------------------------------------------------------------------
    def _state_action(self, stmt: ast.stmt, in_loop: bool) -> list[ir.Instr] | None:
        if not self._is_state_action(stmt):
            return None
        pos = self._pos(stmt)
        if isinstance(stmt, ast.Expr):
            call = stmt.value
            attr = call.func.attr
            if not self._on_state(call.func):       # forks.join(...)
                return [ir.Join(*pos, self.expr(call.func.value), self.expr(call))]
            if attr in _PSEUDO:
                raise self.error(stmt, f"{self.state}.{attr}(...) opens a block: end the line with ':' and "
                                       "indent its body below it")
            if attr == "return_":
                if len(call.args) > 1 or call.keywords:
                    raise self.error(stmt, f"{self.state}.return_() takes one value")
                return [ir.Return(*pos, self.expr(call.args[0]) if call.args else None)]
            helper = STATE_SELECT if attr == "select" else STATE_GEN
            fn = ast.copy_location(ast.Name(helper, ast.Load()), call.func)
            lowered = ast.copy_location(ast.Call(fn, call.args, call.keywords), call)
            kind = ir.Select if attr == "select" else ir.Gen
            return [kind(*pos, None, self.expr(lowered), _name_of(call), _args_of(call))]
        if isinstance(stmt, ast.AugAssign):
            target = None if self._is_state(stmt.target) else self.expr(_loaded(stmt.target))
            parts = self._parts(stmt.value, target)
            if target is None:
                return parts
            # another target (a fork, a fork group, ...): if at run time it is not a program state,
            # the statement runs as plain Python instead
            return [ir.AppendTo(*pos, target, parts, self.stmts([stmt]))]
        if isinstance(stmt, ast.Assign):
            name = stmt.targets[0].id
            self.fork_names.add(name)
            return [ir.Fork(*pos, self.assign(stmt.targets[0], stmt), name, self.expr(stmt.value))]
        if isinstance(stmt, ast.With):
            call = stmt.items[0].context_expr
            attr = call.func.attr
            body = self.block(stmt.body, in_loop)
            if attr == "var_scope":
                if len(call.args) != 1 or call.keywords:
                    raise self.error(call, f"{self.state}.var_scope() takes one name")
                name = self.expr(call.args[0])
                return [ir.VarScopeBegin(*pos, None, name), *body, ir.VarScopeEnd(*pos, None, name)]
            if call.args or call.keywords:   # `with s.user("text"):` is not a scope
                raise self.error(call, f"'with {self.state}.{attr}():' takes no arguments; use "
                                       f"`{self.state} += {attr}(...)` to add a whole message")
            return [ir.RoleBegin(*pos, None, attr), *body, ir.RoleEnd(*pos, None, attr)]
        return None     # pragma: no cover

    def _parts(self, value: ast.expr, target: ir.Code | None) -> list[ir.Instr]:
        """`a + b + c` appended to a state: each operand, left to right, as its own instruction."""
        if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
            return self._parts(value.left, target) + self._parts(value.right, target)
        pos = self._pos(value)
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return [ir.AppendText(*pos, target, value.value)]
        if isinstance(value, ast.Call):
            fname = _func_name(value.func)
            if fname in _GEN_FUNCS:
                return [ir.Gen(*pos, target, self.expr(value), _name_of(value), _args_of(value))]
            if fname in _SELECT_FUNCS:
                return [ir.Select(*pos, target, self.expr(value), _name_of(value), _args_of(value))]
            if fname in _ROLES and _role_call_arg(value) is not False:
                inner = _role_call_arg(value)
                body = self._parts(inner, target) if inner is not None else []
                return [ir.RoleBegin(*pos, target, fname), *body, ir.RoleEnd(*pos, target, fname)]
            if fname in _ROLE_EDGES and not value.args and not value.keywords:
                role, edge = _ROLE_EDGES[fname]
                return [(ir.RoleBegin if edge == "begin" else ir.RoleEnd)(*pos, target, role)]
        return [ir.AppendValue(*pos, target, self.expr(value))]

    # -- unsupported constructs -------------------------------------------------------------------
    def _check_supported(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, (ast.Global, ast.Nonlocal)):
            kind = "global" if isinstance(stmt, ast.Global) else "nonlocal"
            raise self.error(stmt, f"'{kind}' is not supported in SGL programs; pass values in as arguments "
                                   "or return them")
        if isinstance(stmt, (ast.AsyncFor, ast.AsyncWith)):
            raise self.error(stmt, "'async' statements are not supported in SGL programs")
        for node in _walk_same_scope(stmt):
            if isinstance(node, (ast.Yield, ast.YieldFrom)):
                raise self.error(node, "'yield' is not supported in SGL programs (a program is not a generator)")
            if isinstance(node, ast.Await):
                raise self.error(node, "'await' is not supported in SGL programs")
            if isinstance(node, ast.Name) and node.id == self.state and isinstance(node.ctx, (ast.Store, ast.Del)):
                if not self._is_state_augassign(stmt, node):
                    raise self.error(node, f"rebinding the program state '{self.state}' is not supported; "
                                           "use another name")
            if isinstance(node, ast.AugAssign) and self._is_state(node.target) and not isinstance(node.op, ast.Add):
                raise self.error(node, f"only '{self.state} += ...' changes a program state")
            if isinstance(node, ast.NamedExpr) and node.target.id == self.state:
                raise self.error(node, f"rebinding the program state '{self.state}' is not supported")

    def _is_state_augassign(self, stmt: ast.stmt, name: ast.Name) -> bool:
        return any(isinstance(n, ast.AugAssign) and n.target is name and isinstance(n.op, ast.Add)
                   for n in _walk_same_scope(stmt))


def _walk_same_scope(node: ast.AST):
    """ast.walk that does not enter nested functions, classes, lambdas or comprehensions: their
    names live in their own scope (a decorator, though, runs in ours)."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        if isinstance(n, _SCOPES):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                todo.extend(n.decorator_list)
            continue
        todo.extend(ast.iter_child_nodes(n))


def _target_text(target: ast.expr) -> str:
    text = ast.unparse(target)
    return text[1:-1] if isinstance(target, ast.Tuple) and text.startswith("(") else text


def _loaded(target: ast.expr) -> ast.expr:
    """A copy of an assignment target that reads it instead."""
    node = copy.deepcopy(target)
    for n in ast.walk(node):
        if hasattr(n, "ctx"):
            n.ctx = ast.Load()
    return node


def _func_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _has_sgl_call(node: ast.expr) -> bool:
    return any(isinstance(n, ast.Call) and _func_name(n.func) in _SGL_FUNCS for n in ast.walk(node))


def _role_call_arg(call: ast.Call):
    """`user()` -> None, `user(x)` / `user(expr=x)` -> x, anything else -> False (not a role call)."""
    if not call.args and not call.keywords:
        return None
    if len(call.args) == 1 and not call.keywords:
        return call.args[0]
    if not call.args and len(call.keywords) == 1 and call.keywords[0].arg == "expr":
        return call.keywords[0].value
    return False


def _name_of(call: ast.Call) -> str | None:
    for kw in call.keywords:
        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    if call.args or any(kw.arg == "name" for kw in call.keywords):
        return "<dynamic>"
    return None


def _args_of(call: ast.Call) -> str:
    parts = [ast.unparse(a) for a in call.args[1:]]
    parts += [f"{kw.arg}={ast.unparse(kw.value)}" if kw.arg else f"**{ast.unparse(kw.value)}"
              for kw in call.keywords if kw.arg != "name"]
    return ", ".join(parts)
