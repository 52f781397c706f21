"""StateExecutor: applies SGL expressions to one program state's text, messages and variables.

The program's own state runs inline (a gen blocks the program until it is done, and its errors
surface at the program line that caused them). Fork states run on a worker thread each: appending
to a fork queues the expression and returns, so the forks of a program generate at the same time --
which is what lets continuous batching see them together -- and reading a fork's variable waits
for it.
"""
from __future__ import annotations

import math
import queue
import random
import threading
import warnings

from .choices import token_length_normalized
from .context import ProgramRun
from .errors import ProgramCancelled, SglError
from .expr import (SglConcateAndAppend, SglExpr, SglExprList, SglGen, SglRoleBegin, SglRoleEnd, SglSelect,
                   SglText, SglVarScopeBegin, SglVarScopeEnd, as_expr)
from .reasoning import split_reasoning
from .sampling import resolve

_POLL_S = 0.05      # waits wake this often so Ctrl-C lands promptly


class SglStr(str):
    """A generated value: a str, plus the seed's `s["x"].contains("...")`."""

    def contains(self, sub: str) -> bool:
        return sub in self


class MissingVariable(SglError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def wait_for(event: threading.Event) -> None:
    while not event.wait(_POLL_S):
        pass


class StateExecutor:
    def __init__(self, run: ProgramRun, threaded: bool = False):
        self.run = run
        self.text = ""
        self.messages: list[dict] = []
        self.vars: dict = {}
        self.meta: dict = {}
        self.cur_role: str | None = None
        self.role_begin_pos = 0
        self.fork_start = 0
        self.var_spans: dict[str, list] = {}        # name -> [start, end or None]: where a gen writes
        self._scopes: dict[str, int] = {}
        self._pending: dict[str, threading.Event] = {}
        self._cached_text = ""      # text whose KV the last request left in the cache
        self.rewrites: list[tuple[int, str, int]] = []  # (start, old text, new length): text replaced
        self.error: BaseException | None = None
        self.changed = threading.Condition()        # text grew: wakes text_iter() readers
        self.threaded = threaded
        self.ended = False
        self.finished = threading.Event()           # a fork's worker has run everything and exited
        if threaded:
            self._queue: queue.Queue = queue.Queue()
            self._worker = threading.Thread(target=self._work, name=f"sgl-fork-{run.program_id}", daemon=True)
            self._worker.start()

    # -- producer side ----------------------------------------------------------------------------
    def submit(self, value) -> None:
        expr = as_expr(value)
        if not self.threaded:
            self.run.check()
            self.execute(expr)
            return
        if self.error is not None:
            raise self.error
        if self.ended:
            raise SglError("this fork was joined; append to the joined state instead")
        for name in _names_set_by(expr):
            self._pending[name] = threading.Event()
        self._queue.put(expr)

    def sync(self) -> None:
        """Wait until every queued expression ran; raise what one of them raised."""
        if self.threaded:
            q = self._queue
            with q.all_tasks_done:
                while q.unfinished_tasks:
                    q.all_tasks_done.wait(_POLL_S)
        if self.error is not None:
            raise self.error

    def end(self) -> None:
        """No more expressions: the worker finishes what is queued and exits."""
        if self.threaded and not self.ended:
            self.ended = True
            self._queue.put(None)

    def get_var(self, name):
        event = self._pending.get(name)
        if event is not None:
            wait_for(event)
        if name in self.vars:
            return self.vars[name]
        if self.error is not None:
            raise self.error
        known = ", ".join(map(repr, self.vars)) or "none yet"
        raise MissingVariable(f"the program state has no variable {name!r} (it has: {known})")

    def _work(self) -> None:
        while True:
            expr = self._queue.get()
            try:
                if expr is None:
                    self.finished.set()
                    return
                if self.error is None:
                    self.run.check()
                    self.execute(expr)
            except BaseException as e:      # kept for the reader; later expressions are skipped
                self.error = e
                for event in self._pending.values():
                    event.set()
            finally:
                self._queue.task_done()
                with self.changed:
                    self.changed.notify_all()

    # -- expressions ------------------------------------------------------------------------------
    def execute(self, expr: SglExpr) -> None:
        if isinstance(expr, SglExprList):
            for item in expr.items:
                self.execute(item)
        elif isinstance(expr, SglText):
            self.append(expr.value)
        elif isinstance(expr, SglGen):
            self._gen(expr)
        elif isinstance(expr, SglSelect):
            self._select(expr)
        elif isinstance(expr, SglRoleBegin):
            self._role_begin(expr.role)
        elif isinstance(expr, SglRoleEnd):
            self._role_end(expr.role)
        elif isinstance(expr, SglVarScopeBegin):
            self._scopes[expr.name] = len(self.text)
        elif isinstance(expr, SglVarScopeEnd):
            if expr.name not in self._scopes:
                raise SglError(f"var_scope({expr.name!r}) ended without beginning")
            self._set_var(expr.name, SglStr(self.text[self._scopes.pop(expr.name):]))
        elif isinstance(expr, SglConcateAndAppend):
            parts = []
            for exe in expr.forks:
                exe.sync()
                parts.append(exe.text[exe.fork_start:])
            self.append("".join(parts))
        else:
            raise SglError(f"cannot append {type(expr).__name__} to a program state")

    def append(self, text: str) -> None:
        with self.changed:
            self.text += text
            self.changed.notify_all()

    def _replace_tail(self, start: int, text: str) -> None:
        """The text from `start` on becomes `text` (logged, so a streaming reader can follow)."""
        with self.changed:
            self.rewrites.append((start, self.text[start:], len(text)))
            self.text = self.text[:start] + text
            self.changed.notify_all()

    def follow_rewrites(self, pos: int, seen: int) -> tuple[int, int, str]:
        """A reader that has yielded the text up to `pos` and knew of the first `seen` rewrites:
        where it stands in the text now, how many rewrites it knows, and the part of the replaced
        text it had not shown yet (shown as it was: the stream stays what was generated, and the
        reader never shows the same text twice). Call holding `changed`."""
        missed = ""
        for start, old, new_len in self.rewrites[seen:]:
            if pos >= start + len(old):
                pos += new_len - len(old)
            elif pos > start:
                missed += old[pos - start:]
                pos = start + new_len
        return pos, len(self.rewrites), missed

    def _set_var(self, name, value, meta=None) -> None:
        self.vars[name] = value
        if meta is not None:
            self.meta[name] = meta
        event = self._pending.get(name)
        if event is not None:
            event.set()

    def _gen(self, e: SglGen) -> None:
        run = self.run
        backend = run.backend
        role_stops = backend.chat_template.stop_token_ids(self.cur_role) if self.cur_role else ()
        req = resolve(run.defaults, e.params, role_stops)
        prompt = self.text
        start = len(prompt)
        if e.name is not None:
            self.var_spans[e.name] = [start, None]
        streamed: list[str] = []

        def on_delta(delta: str) -> None:
            streamed.append(delta)
            self.append(delta)

        try:
            result = backend.generate(prompt, req, run, on_delta)
        finally:
            if e.name is not None:
                self.var_spans[e.name][1] = len(self.text)
        value, got = result.text, "".join(streamed)
        if value.startswith(got):           # as usual: the stream is a prefix of the result
            self.append(value[len(got):])
        else:
            self._replace_tail(start, value)
        self._cached_text = self.text
        if result.meta.get("constraint_complete") is False:
            # the mask guarantees a match only for an output that ended on its own
            warnings.warn(f"gen({e.name!r}): max_tokens={req.max_tokens} ended the constrained output before "
                          "the pattern was complete, so it is only the start of a match; raise max_tokens",
                          stacklevel=2)
        if e.reasoning is not None:
            value = self._separate_reasoning(e.name, start, value, e.reasoning)
        if e.name is not None:
            self.var_spans[e.name][1] = len(self.text)
            self._set_var(e.name, SglStr(value), result.meta)

    def _select(self, e: SglSelect) -> None:
        choices = list(e.choices or ())
        if not choices or any(not isinstance(c, str) or not c for c in choices):
            raise SglError(f"select({e.name!r}) needs a list of non-empty strings as choices, got {e.choices!r}")
        run = self.run
        scores = run.backend.choice_logprobs(self.text, choices, run)
        normalized = [sum(t[0] for t in row) / len(row) if row else float("-inf") for row in scores]
        method = e.choices_method or token_length_normalized
        unconditional = None
        if getattr(method, "requires_unconditional_logprobs", False):
            unconditional = run.backend.unconditional_logprobs([[t[1] for t in row] for row in scores], run)
        decision = method(choices=choices, normalized_prompt_logprobs=normalized, input_token_logprobs=scores,
                          output_token_logprobs=[[] for _ in choices],
                          unconditional_token_logprobs=unconditional)
        chosen = decision.decision
        if e.temperature and e.temperature > 1e-5:     # sample instead of taking the best
            top = max(normalized)
            weights = [math.exp((v - top) / e.temperature) for v in normalized]
            chosen = random.choices(choices, weights=weights)[0]
        self.append(chosen)
        self._cached_text = self.text
        if e.reasoning is not None:
            chosen = self._separate_reasoning(e.name, len(self.text) - len(chosen), chosen, e.reasoning)
        if e.name is not None:
            self._set_var(e.name, SglStr(chosen), decision.meta_info)

    def _separate_reasoning(self, name: str, start: int, value: str, fmt) -> str:
        """separate_reasoning(): `value` (the text from `start` on) keeps its answer; its reasoning
        becomes the variable <name>_reasoning_content. Returns the answer."""
        reasoning, answer = split_reasoning(value, fmt)
        if answer != value:
            self._replace_tail(start, answer)
        self._set_var(f"{name}_reasoning_content", SglStr(reasoning))
        return answer

    def _role_begin(self, role: str) -> None:
        if self.cur_role is not None:
            raise SglError(f"cannot begin a {role} message inside the open {self.cur_role} message: "
                           "roles do not nest")
        self.append(self.run.backend.chat_template.role_prefix(role, self.messages))
        self.cur_role = role
        self.role_begin_pos = len(self.text)

    def _role_end(self, role: str) -> None:
        if self.cur_role != role:
            open_ = f"the open message is {self.cur_role}" if self.cur_role else "no message is open"
            raise SglError(f"cannot end a {role} message: {open_}")
        content = self.text[self.role_begin_pos:].lstrip()
        self.append(self.run.backend.chat_template.role_suffix(role, self.messages))
        self.messages.append({"role": role, "content": content})
        self.cur_role = None

    # -- forks ------------------------------------------------------------------------------------
    def fork(self, size: int) -> list["StateExecutor"]:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise SglError(f"fork(size) needs a positive integer, got {size!r}")
        self.sync()
        if size > 1 and self.text and self.text != self._cached_text:
            # compute the shared prefix once, so the forks all find it in the prefix cache
            self.run.backend.cache_prefix(self.text, self.run)
            self._cached_text = self.text
        children = []
        for _ in range(size):
            child = StateExecutor(self.run, threaded=True)
            child.text = self.text
            child.messages = list(self.messages)
            child.vars = dict(self.vars)
            child.meta = dict(self.meta)
            child.cur_role, child.role_begin_pos = self.cur_role, self.role_begin_pos
            child.fork_start = len(self.text)
            child._cached_text = self._cached_text
            children.append(child)
        self.run.forks.extend(children)
        return children


def _names_set_by(expr: SglExpr) -> list[str]:
    if isinstance(expr, SglExprList):
        return [n for item in expr.items for n in _names_set_by(item)]
    if isinstance(expr, (SglGen, SglSelect)) and expr.name is not None:
        return [expr.name] + ([f"{expr.name}_reasoning_content"] if expr.reasoning is not None else [])
    if isinstance(expr, SglVarScopeEnd):
        return [expr.name]
    return []


__all__ = ["StateExecutor", "SglStr", "MissingVariable", "ProgramCancelled", "wait_for"]
