"""ProgramRun: what one run of a program shares between its state and its forks -- the backend, the
sampling defaults, its program id (sent with every request), its statistics and its cancellation."""
from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field

from ..engine.handle import RequestHandle, cancel_all
from .errors import ProgramCancelled
from .sampling import RunDefaults

_ids = itertools.count()


@dataclass
class ProgramStats:
    """Engine requests a program sent, and how much of their prompts the prefix cache served."""
    num_requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cancelled_requests: int = 0     # ended aborted: cancel(), Ctrl-C, or an error elsewhere in the program
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, prompt_tokens: int, cached_tokens: int, completion_tokens: int) -> None:
        with self._lock:
            self.num_requests += 1
            self.prompt_tokens += prompt_tokens
            self.cached_tokens += cached_tokens
            self.completion_tokens += completion_tokens

    def record_cancelled(self) -> None:
        with self._lock:
            self.cancelled_requests += 1

    @property
    def prefix_hit_ratio(self) -> float:
        """Fraction of prompt tokens served from the radix cache instead of computed."""
        return self.cached_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    def __str__(self) -> str:
        cancelled = f", {self.cancelled_requests} cancelled" if self.cancelled_requests else ""
        return (f"{self.num_requests} requests, {self.prompt_tokens} prompt tokens "
                f"({self.prefix_hit_ratio:.0%} from the prefix cache), {self.completion_tokens} generated"
                f"{cancelled}")


class ProgramRun:
    def __init__(self, backend, defaults: RunDefaults, name: str = "program"):
        self.program_id = f"sgl-{name}-{next(_ids)}"
        self.backend = backend
        self.defaults = defaults
        self.stats = ProgramStats()
        self.cancelled = threading.Event()
        self._lock = threading.Lock()
        self._handles: dict[int, object] = {}     # in-flight requests, by track() token
        self._tokens = itertools.count()
        self.forks: list = []               # fork executors, ended when the program ends

    def track(self, handle) -> int:
        """Remember an in-flight request so cancel() can abort it; returns a token for untrack().
        `handle`: an engine RequestHandle, or any object whose cancel() aborts the request (a remote
        backend's)."""
        with self._lock:
            token = next(self._tokens)
            self._handles[token] = handle
        if self.cancelled.is_set():     # sent just as the run was cancelled: it cannot outlive the run
            _cancel(handle, self.stats)
        return token

    def untrack(self, token: int) -> None:
        """The request has ended (or was just cancelled); an engine request that ended aborted is
        counted in stats.cancelled_requests."""
        with self._lock:
            handle = self._handles.pop(token, None)
        if isinstance(handle, RequestHandle) and _ended_aborted(handle):
            self.stats.record_cancelled()

    def cancel(self) -> None:
        """Stop the program: its in-flight requests are aborted (their KV blocks freed) and its
        state and forks raise ProgramCancelled at their next step."""
        cancel_runs([self])

    def check(self) -> None:
        if self.cancelled.is_set():
            raise ProgramCancelled(f"program {self.program_id} was cancelled")

    def end_forks(self) -> BaseException | None:
        """The program has ended: let every fork finish what it was given; returns the first error
        one of them hit (one that nobody read)."""
        for exe in self.forks:
            exe.end()
        first = None
        for exe in self.forks:
            try:
                exe.sync()
            except ProgramCancelled:
                pass
            except BaseException as e:
                first = first or e
        return first


def cancel_runs(runs) -> None:
    """ProgramRun.cancel for many runs at once: every in-flight request of all of them is aborted
    in one engine step (a Ctrl-C'd batch of programs returns promptly, not after one step each)."""
    handles = []
    for run in runs:
        run.cancelled.set()         # first, so a request submitted meanwhile is cancelled by track()
        with run._lock:
            handles += [(h, run.stats) for h in run._handles.values()]
    cancel_all([h for h, _ in handles if isinstance(h, RequestHandle)])
    for h, stats in handles:
        if not isinstance(h, RequestHandle):
            _cancel(h, stats)


def _cancel(handle, stats: ProgramStats) -> None:
    """Abort one request. An engine request is counted as cancelled when its owner untracks it (by
    how it ended); another backend's request (anything with cancel()) is counted here."""
    handle.cancel()
    if not isinstance(handle, RequestHandle):
        stats.record_cancelled()


def _ended_aborted(handle: RequestHandle) -> bool:
    if not handle.done():
        return False
    try:
        output = handle.result()
    except Exception:           # it failed: not a cancellation
        return False
    return any(c.finish_reason == "abort" for c in output.outputs)
