"""SglFunction: a decorated program -- compiled once, run many times (run / run_batch / stream) --
and the lifecycle of one run (start_run), which a %%sgl cell's program shares."""
from __future__ import annotations

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor, wait, FIRST_EXCEPTION
from dataclasses import dataclass
from typing import Any, Callable

from . import interpreter
from .backends import Backend, resolve_backend
from .compiler import STATE_GEN, STATE_SELECT, compile_function
from .context import ProgramRun, cancel_runs
from .errors import ProgramCancelled, SglError
from .executor import StateExecutor
from .ir import IRListing, Program
from .primitives import PRIMITIVES, gen, select
from .sampling import RunDefaults
from .state import ProgramReturn, ProgramState

_AUTO_THREADS = 64      # run_batch(num_threads="auto"): enough programs in flight to fill a batch


class SglFunction:
    def __init__(self, func: Callable, bind_arguments: dict | None = None, program: Program | None = None):
        if not callable(func):
            raise SglError(f"@function needs a function, got {type(func).__name__}")
        self.func = func
        self.name = getattr(func, "__name__", "program")
        self.bind_arguments = dict(bind_arguments or {})
        self.signature = inspect.signature(func)
        params = list(self.signature.parameters)
        if not params:
            raise SglError(f"program {self.name}() needs the state as its first parameter, e.g. def {self.name}(s)")
        self.state_name = params[0]
        self.arg_names = params[1:]
        self.program = program if program is not None else compile_function(func)
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    # -- SGLang API -------------------------------------------------------------------------------
    def bind(self, **kwargs) -> "SglFunction":
        unknown = [k for k in kwargs if k not in self.arg_names]
        if unknown:
            raise SglError(f"{self.name}() has no argument(s) {', '.join(unknown)}")
        return SglFunction(self.func, {**self.bind_arguments, **kwargs}, self.program)

    def run(self, *args, stream: bool = False, backend=None, **kwargs) -> ProgramState:
        """Run the program; returns its ProgramState (at once, streaming, with stream=True).

        Keyword arguments named like RunDefaults' fields (max_new_tokens=128, stop=(), temperature=1.0,
        top_p, top_k, min_p, frequency/presence_penalty, ignore_eos, return_logprob, ...) are the
        sampling defaults of every gen in the run; the others are the program's arguments."""
        defaults, kwargs = RunDefaults.split(kwargs)
        job = self.prepare(resolve_backend(backend), defaults, args, kwargs, stream)
        return self.start(job.state, job.arguments)

    def stream(self, *args, **kwargs) -> ProgramState:
        """run(..., stream=True): iterate state.text_iter() for the text as it is generated."""
        return self.run(*args, stream=True, **kwargs)

    def run_batch(self, batch_kwargs, *, backend=None, num_threads="auto", progress_bar: bool = False,
                  **sampling) -> list[ProgramState]:
        """Run the program once per argument dict, concurrently (so the engine batches them).
        `sampling`: the run's sampling defaults, as run() takes them."""
        defaults, unknown = RunDefaults.split(sampling)
        if unknown:
            raise TypeError(f"run_batch() got unexpected keyword argument(s): {', '.join(unknown)} (program "
                            "arguments go in the dicts of batch_kwargs)")
        if not isinstance(batch_kwargs, (list, tuple)):
            raise SglError(f"run_batch() takes a list of argument dicts, got {type(batch_kwargs).__name__}")
        if not batch_kwargs:
            return []
        b = resolve_backend(backend)
        jobs = []
        for i, item in enumerate(batch_kwargs):
            if isinstance(item, dict):
                args, kwargs = (), item
            elif isinstance(item, (list, tuple)):
                args, kwargs = tuple(item), {}
            else:
                raise SglError(f"run_batch() item {i} must be a dict of arguments (or a list), "
                               f"got {type(item).__name__}")
            jobs.append(self.prepare(b, defaults, args, kwargs, stream=False))
        if num_threads == "auto":
            num_threads = _AUTO_THREADS
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise SglError(f"run_batch(num_threads=...) must be 'auto' or a positive integer, got {num_threads!r}")
        return _run_all(self, jobs, min(num_threads, len(jobs)), progress_bar)

    def __call__(self, *args, **kwargs) -> ProgramState:
        return self.run(*args, **kwargs)

    # -- inspection -------------------------------------------------------------------------------
    def ir(self) -> IRListing:
        """The compiled instruction flow, one instruction per line with its source line."""
        if self.program is None:
            return IRListing(f"program {self.name}: no source available, so it runs as plain Python "
                             "against the SGL runtime (no instruction flow to show)")
        return IRListing(self.program.listing())

    def __repr__(self) -> str:
        return f"<SGL program {self.name}({', '.join([self.state_name, *self.arg_names])})>"

    # -- running ----------------------------------------------------------------------------------
    def prepare(self, backend: Backend, defaults: RunDefaults, args: tuple, kwargs: dict,
                stream: bool) -> "_Job":
        """A fresh state and the bound arguments (argument errors raise here, before any request)."""
        try:
            bound = self.signature.bind(None, *args, **{**self.bind_arguments, **kwargs})
        except TypeError as e:
            raise SglError(f"{self.name}(): {e}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop(self.state_name)
        run = ProgramRun(backend, defaults, self.name)
        return _Job(ProgramState(StateExecutor(run), stream=stream), arguments, run)

    def start(self, state: ProgramState, arguments: dict) -> ProgramState:
        return start_run(state, lambda: self._body(state, arguments))

    def _body(self, state: ProgramState, arguments: dict) -> Any:
        if self.program is not None:
            return interpreter.run_program(self.program, state, self._namespace(arguments))
        try:                                # no source: plain Python against the same runtime
            return self.func(state, **arguments)
        except ProgramReturn as r:
            return r.value

    def _namespace(self, arguments: dict) -> dict:
        """A run's namespace: SGL names < the function's globals < its closure < its arguments."""
        fn = self.func
        ns = program_names()
        ns.update(fn.__globals__)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                ns[name] = cell.cell_contents
            except ValueError:      # a closure variable not bound yet
                pass
        ns.update(arguments)
        return ns


@dataclass
class _Job:
    """One prepared run: its state, its bound arguments, and the run they share with the forks."""
    state: ProgramState
    arguments: dict
    run: ProgramRun


def function(func: Callable | None = None, num_api_spec_tokens: int | None = None):
    """@sgl.function: the body is compiled to an instruction flow; .run() / .run_batch() run it."""
    if func is not None:
        return SglFunction(func)
    return SglFunction


instruct = function     # the seed's name


def program_names() -> dict:
    """What every program body sees without importing it: the primitives, @function / @instruct,
    and the helpers the compiler lowers s.generate / s.select to."""
    return {**PRIMITIVES, "function": function, "instruct": instruct, STATE_GEN: gen, STATE_SELECT: select}


# -- one run's lifecycle --------------------------------------------------------------------------
def start_run(state: ProgramState, body: Callable[[], Any]) -> ProgramState:
    """Run `body` as the program of `state`: now, or (stream=True) on its own thread."""
    if not state.streaming:
        state.start()
        _execute(state, body)
        return state
    runner = threading.Thread(target=_execute, args=(state, body), name=f"sgl-{state.program_id}", daemon=True)
    try:
        state.start(runner)             # before it starts: readers wait from now on
        runner.start()
    except BaseException as e:
        # interrupted while starting the runner, which may already be sending requests (or never start)
        if state.claim():               # it never will run the body: nothing was sent; end the run here
            state.finish(None, e)
        if isinstance(e, KeyboardInterrupt):
            raise reported_interrupt(e, *interrupt_run(state)) from None
        state.cancel()
        raise
    return state


def _execute(state: ProgramState, body: Callable[[], Any]) -> None:
    """The body, then its forks drained; on error, everything in flight aborted. A run that is not
    streamed raises its error here."""
    if not state.claim():       # the thread that started this runner was interrupted first and ended the run
        return
    ret_value = error = None
    try:
        ret_value = body()
    except BaseException as e:
        error = e
        state.cancel()
    finally:
        error = state.finish(ret_value, error)
    if error is not None and not state.streaming:
        if isinstance(error, KeyboardInterrupt):        # Ctrl-C while the program ran on this thread
            raise reported_interrupt(error, state.stats.cancelled_requests, True) from None
        raise error


# -- interrupts -----------------------------------------------------------------------------------
def interrupt_run(state: ProgramState) -> tuple[int, bool]:
    """Ctrl-C reached the thread that started (or follows) a run: stop the run if it is still going
    -- its requests aborted and their KV blocks freed, its forks ended -- and wait until it has.
    Returns (how many of its requests ended cancelled, whether the interrupt stopped it); a run that
    had already finished is left as it was: (0, False)."""
    stopping = not state.done
    if stopping:
        state.cancel()
    error = state.wait_finished()
    stopped = stopping or isinstance(error, (KeyboardInterrupt, ProgramCancelled))
    return state.stats.cancelled_requests, stopped


# What an interrupted run raises. Plain Python: the KeyboardInterrupt itself. The notebook extension
# sets a one-line report (nbinfer/jupyter/sgl_magic.py), as %%generate shows its interrupts.
_interrupt_report: Callable[[int, bool], BaseException] | None = None


def report_interrupts_with(report: Callable[[int, bool], BaseException] | None) -> None:
    """report(requests cancelled, whether a run was stopped) -> the exception an interrupted run()
    or run_batch() raises instead of its KeyboardInterrupt; None: the KeyboardInterrupt itself."""
    global _interrupt_report
    _interrupt_report = report


def reported_interrupt(interrupt: BaseException, cancelled: int, stopped: bool) -> BaseException:
    return interrupt if _interrupt_report is None else _interrupt_report(cancelled, stopped)


def _run_all(fn: SglFunction, jobs: list[_Job], num_threads: int, progress_bar: bool) -> list[ProgramState]:
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm      # only when asked for
        bar = tqdm(total=len(jobs), desc=fn.name)
    pool = ThreadPoolExecutor(num_threads, thread_name_prefix=f"sgl-batch-{fn.name}")
    futures = []
    try:
        for job in jobs:
            fut = pool.submit(fn.start, job.state, job.arguments)
            if bar is not None:
                fut.add_done_callback(lambda _: bar.update(1))
            futures.append(fut)
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.05, return_when=FIRST_EXCEPTION)
            failed = [f for f in done if f.exception() is not None]
            if failed:
                i = futures.index(failed[0])
                error = failed[0].exception()
                try:
                    error.add_note(f"(program {i} of the batch of {len(jobs)})")
                except AttributeError:
                    pass
                raise error
        return [job.state for job in jobs]
    except BaseException as e:
        stopped = not all(job.state.done for job in jobs)
        cancel_runs([job.run for job in jobs])     # first (one engine step for the whole batch): a program
        for f in futures:                          # starting meanwhile stops at its first request
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)   # every program has stopped
        if isinstance(e, KeyboardInterrupt):
            cancelled = sum(job.run.stats.cancelled_requests for job in jobs)
            raise reported_interrupt(e, cancelled, stopped) from None
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
