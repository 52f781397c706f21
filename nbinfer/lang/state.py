"""ProgramState (`s` inside a program, and what run() returns) and ProgramStateGroup (s.fork(n)).

SGLang's names and behaviour: `s += ...`, `s["var"]`, `"var" in s`, text(), messages(),
text_iter(), fork / join, role and var_scope context managers; plus the seed's `.text` attribute
(`state.text` is the text and `state.text()` returns it too), `s.generate(...)`, `s.return_(x)`.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from .context import ProgramRun, ProgramStats
from .errors import SglError
from .executor import _POLL_S, SglStr, StateExecutor, wait_for
from .expr import (SglConcateAndAppend, SglExpr, SglRoleBegin, SglRoleEnd, SglVarScopeBegin,
                   SglVarScopeEnd, role)
from .primitives import gen, select


class ProgramReturn(BaseException):
    """s.return_(x) called from host code: ends the program with x."""

    def __init__(self, value):
        super().__init__()
        self.value = value


class StateText(str):
    """The program's text; calling it returns it again, so SGLang's `state.text()` and the seed's
    `state.text` both read it."""

    def __call__(self) -> str:
        return str(self)


class ProgramState:
    def __init__(self, executor: StateExecutor, stream: bool = False):
        self._exe = executor
        self._stream = stream
        # a fork is finished when its worker has drained; the program's own state when its run ends
        self._finished = executor.finished if executor.threaded else threading.Event()
        self._runner: threading.Thread | None = None     # the thread running the program body (stream=True)
        self._claimed = threading.Lock()        # taken once by whoever ends up running the body (claim())
        self._run_error: BaseException | None = None
        self.ret_value = None

    @property
    def _run(self) -> ProgramRun:
        return self._exe.run

    # -- appending --------------------------------------------------------------------------------
    def __iadd__(self, other):
        if other is None:
            raise SglError("cannot append None to a program state")
        self._exe.submit(other)
        return self

    def generate(self, name: str | None = None, **kwargs) -> None:
        """The seed's statement form of gen: `s.generate(name="x", max_tokens=..., temperature=...)`."""
        self._exe.submit(gen(name, **kwargs))

    def select(self, name: str | None = None, choices=None, **kwargs) -> None:
        self._exe.submit(select(name, choices, **kwargs))

    def return_(self, value=None):
        """The seed's `s.return_(x)`: end the program; x becomes its ret_value."""
        raise ProgramReturn(value)

    def _pseudo(self, *args, **kwargs):
        raise SglError("s.if_(...): / s.elif_(...): / s.else_(): / s.while_(...): are block forms: they work "
                       "in a %%sgl cell or an @function/@instruct body compiled from source, followed by ':' "
                       "and an indented block")

    if_ = elif_ = else_ = while_ = _pseudo

    # -- roles and scopes -------------------------------------------------------------------------
    def _role(self, name: str, expr=None):
        if expr is not None:
            self._exe.submit(role(name, expr))
            return None
        return self._role_scope(name)

    @contextmanager
    def _role_scope(self, name: str):
        self._exe.submit(SglRoleBegin(name))
        yield self
        self._exe.submit(SglRoleEnd(name))

    def system(self, expr=None):
        return self._role("system", expr)

    def user(self, expr=None):
        return self._role("user", expr)

    def assistant(self, expr=None):
        return self._role("assistant", expr)

    @contextmanager
    def var_scope(self, name: str):
        """Text appended inside the block becomes the variable `name`."""
        self._exe.submit(SglVarScopeBegin(name))
        yield self
        self._exe.submit(SglVarScopeEnd(name))

    # -- forks ------------------------------------------------------------------------------------
    def fork(self, size: int = 1, position_ids_offset=None) -> "ProgramStateGroup":
        children = self._exe.fork(size)
        return ProgramStateGroup([ProgramState(c, self._stream) for c in children], self)

    @contextmanager
    def copy(self):
        group = self.fork(1)
        try:
            yield group[0]
        finally:
            group.join()

    # -- the run's lifecycle (program.start_run drives it) ---------------------------------------
    @property
    def streaming(self) -> bool:
        """Run with stream=True: the body runs on its own thread; text_iter() follows it."""
        return self._stream

    def start(self, runner: threading.Thread | None = None) -> None:
        """The program's body is about to run, on `runner` when that is another thread (a streamed
        run): until finish(), readers on other threads wait for it."""
        self._runner = runner

    def claim(self) -> bool:
        """True for the first caller only. The runner thread claims the body as it starts; the thread
        that started it claims it when starting was interrupted -- if it wins, the body never runs and
        that thread finishes the run, so nobody waits for a runner that never started."""
        return self._claimed.acquire(blocking=False)

    @property
    def done(self) -> bool:
        """The run has ended (body returned or raised, forks drained); for a fork, its worker has."""
        return self._finished.is_set()

    def finish(self, ret_value=None, error: BaseException | None = None) -> BaseException | None:
        """The body has ended, returning `ret_value` or raising `error`: the forks finish what they
        were given, and readers waiting for the program wake. Returns the run's error: the body's,
        else the first a fork hit (None when all went well)."""
        fork_error = self._run.end_forks()
        self.ret_value = ret_value
        self._run_error = error if error is not None else fork_error
        self._finished.set()
        with self._exe.changed:
            self._exe.changed.notify_all()
        return self._run_error

    def wait_finished(self) -> BaseException | None:
        """Wait until the run has ended (a streamed run's body runs on another thread); returns its
        error: the body's, else the first a fork hit (None when all went well)."""
        if self._waits_for_runner():
            wait_for(self._finished)
        return self._run_error

    def _waits_for_runner(self) -> bool:
        return self._runner is not None and self._runner is not threading.current_thread()

    # -- reading ----------------------------------------------------------------------------------
    def sync(self) -> None:
        """Wait for everything this state was asked to do (and, for a streamed run, for the program)."""
        if self._waits_for_runner():
            wait_for(self._finished)
            if self._run_error is not None:
                raise self._run_error
        self._exe.sync()

    @property
    def text(self) -> StateText:
        self.sync()
        return StateText(self._exe.text)

    def messages(self) -> list[dict]:
        self.sync()
        return [dict(m) for m in self._exe.messages]

    def error(self) -> BaseException | None:
        try:
            self.sync()
        except BaseException as e:
            return e
        return None

    def get_var(self, name):
        if self._waits_for_runner() and name not in self._exe.vars:
            self.sync()
        return self._exe.get_var(name)

    def set_var(self, name, value) -> None:
        self._exe.vars[name] = value

    def get_meta_info(self, name):
        self.get_var(name)
        return self._exe.meta.get(name)

    def __getitem__(self, name):
        return self.get_var(name)

    def __setitem__(self, name, value) -> None:
        self.set_var(name, value)

    def __contains__(self, name) -> bool:
        self.sync()
        return name in self._exe.vars

    def text_iter(self, var_name: str | None = None) -> Iterator[str]:
        """A streamed run (`stream=True`): text as it is generated -- all of it, or one variable's.
        Otherwise: the whole text (or the variable) at once."""
        if not self._stream:
            yield self.text if var_name is None else self.get_var(var_name)
            return
        exe = self._exe
        pos = 0             # how far into the text we have yielded
        rewrites = 0        # how many of the text's rewrites `pos` accounts for
        while True:
            with exe.changed:
                pos, rewrites, missed = exe.follow_rewrites(pos, rewrites)
                start, end, done = self._span(var_name)
                if start is None:                   # the variable's gen has not started
                    if done:
                        break
                    exe.changed.wait(_POLL_S)
                    continue
                cursor = max(pos, start)
                limit = end if end is not None else len(exe.text)
                final = done or end is not None
                if limit <= cursor and not final and not missed:
                    exe.changed.wait(_POLL_S)
                    continue
                chunk, pos = missed + exe.text[cursor:limit], max(limit, cursor)
            if chunk:
                yield chunk
            if final:
                break
        if self._run_error is not None:
            raise self._run_error

    def _span(self, var_name):
        """(start, end or None, program finished) of what text_iter streams."""
        done = self._finished.is_set()
        if var_name is None:
            return 0, None, done
        span = self._exe.var_spans.get(var_name)
        if span is None:
            return None, None, done
        return span[0], span[1], done

    # -- program-level ----------------------------------------------------------------------------
    @property
    def program_id(self) -> str:
        return self._run.program_id

    @property
    def stats(self) -> ProgramStats:
        """The program's engine requests: prompt tokens, how many the prefix cache served, ..."""
        return self._run.stats

    @property
    def prefix_hit_ratio(self) -> float:
        return self._run.stats.prefix_hit_ratio

    def cancel(self) -> None:
        """Abort the program's in-flight requests; it stops at its next step."""
        self._run.cancel()

    def __repr__(self) -> str:
        exe = self._exe
        state = "running" if self._runner is not None and not self._finished.is_set() else "done"
        names = ", ".join(map(str, exe.vars)) or "-"
        ret = f", ret_value={self.ret_value!r}" if self.ret_value is not None else ""
        return (f"<ProgramState {self.program_id} {state}: {len(exe.text)} chars, vars: {names}{ret}; "
                f"{self.stats}>")


class ProgramStateGroup:
    """The states s.fork(n) returned. `forks += x` appends x (a str or SGL expression) to each,
    `forks += lambda i: ...` appends what it returns for fork i, `forks += [a, b, ...]` one each,
    `forks[i] += x` appends x to fork i alone."""

    def __init__(self, states: list[ProgramState], parent: ProgramState):
        self.states = states
        self.parent = parent

    def __len__(self) -> int:
        return len(self.states)

    def __iter__(self):
        return iter(self.states)

    def __getitem__(self, i):
        return self.states[i]

    def __setitem__(self, i, value) -> None:
        """`forks[i] += x` appends to fork i, then Python stores the result back into forks[i]: that
        is the same fork (as SGLang checks), so there is nothing to store. Anything else is an error."""
        try:
            same = value is self.states[i]
        except (IndexError, TypeError):
            same = False
        if not same:
            raise SglError(f"forks[{i!r}] = ...: the forks of a fork group cannot be replaced; append to one "
                           f"with forks[{i!r}] += ...")

    def __iadd__(self, other):
        if isinstance(other, Callable) and not isinstance(other, (str, SglExpr)):
            for i, st in enumerate(self.states):
                st += other(i)
        elif isinstance(other, (list, tuple)):
            if len(other) != len(self.states):
                raise SglError(f"appending a list to {len(self.states)} forks needs {len(self.states)} items, "
                               f"got {len(other)}")
            for st, item in zip(self.states, other):
                st += item
        else:
            for st in self.states:
                st += other
        return self

    def join(self, mode: str = "gather_variable") -> None:
        """Wait for the forks. gather_variable: each variable the forks made becomes a list in the
        parent (one value per fork). concate_and_append: the forks' new text, in order, is appended
        to the parent."""
        if mode not in ("gather_variable", "concate_and_append"):
            raise SglError(f"join(mode={mode!r}): the mode must be 'gather_variable' or 'concate_and_append'")
        for st in self.states:
            st._exe.sync()
        if mode == "gather_variable":
            parent_vars = self.parent._exe.vars
            before = set(parent_vars)
            for st in self.states:
                for name, value in st._exe.vars.items():
                    if name not in before:
                        parent_vars.setdefault(name, []).append(value)
        else:
            self.parent._exe.submit(SglConcateAndAppend([st._exe for st in self.states]))
        for st in self.states:
            st._exe.end()

    def __repr__(self) -> str:
        return f"<ProgramStateGroup of {len(self.states)} forks>"


__all__ = ["ProgramState", "ProgramStateGroup", "ProgramReturn", "StateText", "SglStr"]
