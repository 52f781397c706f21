"""SglFunction: a decorated program -- compiled once, run many times (run / run_batch / stream)."""
from __future__ import annotations

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor, wait, FIRST_EXCEPTION
from typing import Any, Callable

from . import interpreter
from .compiler import compile_function
from .context import ProgramRun, cancel_runs
from .errors import ProgramCancelled, SglError
from .executor import StateExecutor
from .ir import IRListing, Program
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

    def run(self, *args, max_new_tokens: int = 128, stop=(), stop_token_ids=(), temperature: float = 1.0,
            top_p: float = 1.0, top_k: int = -1, min_p: float = 0.0, frequency_penalty: float = 0.0,
            presence_penalty: float = 0.0, ignore_eos: bool = False, return_logprob: bool | None = None,
            logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
            return_text_in_logprobs: bool | None = None, stream: bool = False, backend=None,
            **kwargs) -> ProgramState:
        """Run the program; returns its ProgramState (at once, streaming, with stream=True)."""
        from .api import resolve_backend
        defaults = RunDefaults.make(
            max_new_tokens=max_new_tokens, stop=stop, stop_token_ids=stop_token_ids, temperature=temperature,
            top_p=top_p, top_k=top_k, min_p=min_p, frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty, ignore_eos=ignore_eos, return_logprob=return_logprob,
            logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
            return_text_in_logprobs=return_text_in_logprobs)
        state, bound = self.prepare(resolve_backend(backend), defaults, args, kwargs, stream)
        return self.start(state, bound)

    def stream(self, *args, **kwargs) -> ProgramState:
        """run(..., stream=True): iterate state.text_iter() for the text as it is generated."""
        return self.run(*args, stream=True, **kwargs)

    def run_batch(self, batch_kwargs, *, max_new_tokens: int = 128, stop=(), stop_token_ids=(),
                  temperature: float = 1.0, top_p: float = 1.0, top_k: int = -1, min_p: float = 0.0,
                  frequency_penalty: float = 0.0, presence_penalty: float = 0.0, ignore_eos: bool = False,
                  return_logprob: bool | None = None, logprob_start_len: int | None = None,
                  top_logprobs_num: int | None = None, return_text_in_logprobs: bool | None = None,
                  backend=None, num_threads="auto", progress_bar: bool = False) -> list[ProgramState]:
        """Run the program once per argument dict, concurrently (so the engine batches them)."""
        from .api import resolve_backend
        if not isinstance(batch_kwargs, (list, tuple)):
            raise SglError(f"run_batch() takes a list of argument dicts, got {type(batch_kwargs).__name__}")
        if not batch_kwargs:
            return []
        defaults = RunDefaults.make(
            max_new_tokens=max_new_tokens, stop=stop, stop_token_ids=stop_token_ids, temperature=temperature,
            top_p=top_p, top_k=top_k, min_p=min_p, frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty, ignore_eos=ignore_eos, return_logprob=return_logprob,
            logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
            return_text_in_logprobs=return_text_in_logprobs)
        b = resolve_backend(backend)
        jobs = []
        for i, item in enumerate(batch_kwargs):
            if isinstance(item, dict):
                args, kwargs = (), item
            elif isinstance(item, (list, tuple)):
                args, kwargs = tuple(item), {}
            else:
                raise SglError(f"run_batch() item {i} must be a dict of arguments (or a list), got {type(item).__name__}")
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
    def prepare(self, backend, defaults: RunDefaults, args: tuple, kwargs: dict, stream: bool):
        """A fresh state and the bound arguments (argument errors raise here, before any request)."""
        try:
            bound = self.signature.bind(None, *args, **{**self.bind_arguments, **kwargs})
        except TypeError as e:
            raise SglError(f"{self.name}(): {e}") from None
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        arguments.pop(self.state_name)
        run = ProgramRun(backend, defaults, self.name)
        return ProgramState(StateExecutor(run), stream=stream), arguments

    def start(self, state: ProgramState, arguments: dict) -> ProgramState:
        return start_run(state, lambda: self._body(state, arguments))

    def _body(self, state: ProgramState, arguments: dict) -> Any:
        if self.program is not None:
            ns = interpreter.function_namespace(self.func, arguments)
            return interpreter.run_program(self.program, state, ns)
        try:                                # no source: plain Python against the same runtime
            return self.func(state, **arguments)
        except ProgramReturn as r:
            return r.value


def start_run(state: ProgramState, body: Callable[[], Any]) -> ProgramState:
    """Run `body` as the program of `state`: now, or (stream=True) on its own thread."""
    if not state._stream:
        _execute(state, body)
        return state
    state._runner = -1                  # "another thread": readers wait until the run finishes
    threading.Thread(target=_execute, args=(state, body), name=f"sgl-{state.program_id}", daemon=True).start()
    return state


def _execute(state: ProgramState, body: Callable[[], Any]) -> None:
    """A run's lifecycle: the body, then its forks drained; on error, everything in flight aborted."""
    if state._stream:
        state._runner = threading.get_ident()
    error: BaseException | None = None
    try:
        state.ret_value = body()
    except BaseException as e:
        error = e
        state._run.cancel()
    finally:
        fork_error = _end_forks(state._run)
        error = error or fork_error
        state._run_error = error
        state._finished.set()
        with state._exe.changed:
            state._exe.changed.notify_all()
    if error is not None and not state._stream:
        raise error


def _end_forks(run: ProgramRun) -> BaseException | None:
    """Let every fork finish what it was given; the first error one hit (if nobody read it)."""
    for exe in run.forks:
        exe.end()
    first = None
    for exe in run.forks:
        try:
            exe.sync()
        except ProgramCancelled:
            pass
        except BaseException as e:
            first = first or e
    return first


def _body_of(fn: SglFunction, state: ProgramState, arguments: dict) -> Callable[[], Any]:
    return lambda: fn._body(state, arguments)


def _run_all(fn: SglFunction, jobs: list, num_threads: int, progress_bar: bool) -> list[ProgramState]:
    bar = None
    if progress_bar:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(jobs), desc=fn.name)
    pool = ThreadPoolExecutor(num_threads, thread_name_prefix=f"sgl-batch-{fn.name}")
    futures = []
    try:
        for state, arguments in jobs:
            fut = pool.submit(_execute, state, _body_of(fn, state, arguments))
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
        return [state for state, _ in jobs]
    except BaseException:
        for f in futures:
            f.cancel()
        cancel_runs([state._run for state, _ in jobs])     # one engine step for the whole batch
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.close()
