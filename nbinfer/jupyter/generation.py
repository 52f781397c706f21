"""One %%generate run: submit the prompts, stream their text into the cell, bind the result.

Data flow: one reader thread drains all the run's RequestHandles, merged into one stream in the
order the engine produced the events (engine.merge_streams), into the Generation (under a lock); a driver -- the cell's own thread in the foreground, a worker thread with --background --
repaints the cell's display at most every REFRESH_S through a display-id update, so the text that
was streamed is also what the saved .ipynb holds.
"""
from __future__ import annotations

import html
import threading
import time

from ..engine.handle import cancel_all, merge_streams
from .interrupts import cancelled_interrupt, count_aborted
from .threads import start_in_cell

REFRESH_S = 0.1          # display updates are throttled to 10 Hz: each one is a full iopub message...
UPDATE_BYTES_PER_S = 250_000   # ...and slower for big batches, far below jupyter_server's 1 MB/s
                               # iopub data limit, past which it drops output for a while


class Generation:
    """The value `%%generate --out VAR` binds.

    .text     first completion (the text streamed so far while running)
    .texts    every completion, prompt-major (n per prompt)
    .outputs  the RequestOutput of each prompt (waits for the run to finish)
    .done, .wait(), .cancel()
    """

    def __init__(self, prompts: list[str], n: int, system: str | None = None, chat: bool = False):
        self.prompts = prompts            # as shown to the user (the user message for --chat)
        self.n = n
        self.system = system
        self.chat = chat
        self._texts = [[""] * n for _ in prompts]
        self._outputs: list = [None] * len(prompts)
        self._handles: list = []
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._finished = threading.Event()
        self._pending = len(prompts)
        self.error: str | None = None
        self.interrupted = False
        self.started = time.perf_counter()
        self.elapsed: float | None = None
        self._live: "LiveDisplay | None" = None

    # -- feeding (one reader thread) ----------------------------------------------------------------
    def _attach(self, handles: list) -> None:
        self._handles = handles
        events = merge_streams(handles)     # takes the handles' events over now: none is missed
        threading.Thread(target=self._read, args=(events,), name=f"nbinfer-generate-{handles[0].request_id}",
                         daemon=True).start()

    def _read(self, events) -> None:
        try:
            for event in events:
                if event.finished:
                    self._end(event.handle)
                else:
                    with self._lock:
                        self._texts[event.handle][event.index] += event.text
                self._changed.set()
        except BaseException as e:      # never leave the cell waiting on a reader that died
            self._fail(f"{type(e).__name__}: {e}")
            with self._lock:
                self._pending = 0
                self.elapsed = time.perf_counter() - self.started
            self._finished.set()
            self._changed.set()

    def _end(self, i: int) -> None:
        """Request i finished: take its final output, or its error (shown in the cell, once)."""
        try:
            out = self._handles[i].result()
            with self._lock:
                self._outputs[i] = out
                # the final output is authoritative (a stop string may trim what was streamed)
                for c in out.outputs:
                    if c.index < self.n:
                        self._texts[i][c.index] = c.text
        except Exception as e:          # engine shut down or failed this request
            self._fail(str(e) or type(e).__name__)
        with self._lock:
            self._pending -= 1
            if self._pending == 0:
                self.elapsed = time.perf_counter() - self.started
                self._finished.set()

    def _fail(self, message: str) -> None:
        with self._lock:
            self.error = self.error or message

    # -- public -----------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> "Generation":
        """Block until every request finished (Ctrl-C / the stop button interrupts the wait only).

        Called from a cell (the main thread), it also repaints this generation's display once more
        under that cell: a frontend that stopped listening to the original cell (nbclient does, once
        a cell returns) still gets the final text of a --background run."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._finished.wait(0.05):
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"generation still running after {timeout}s")
        if self._live is not None and threading.current_thread() is threading.main_thread():
            self._live.refresh(force=True)
        return self

    def cancel(self) -> None:
        """Abort every request still running; their KV blocks are freed before this returns."""
        cancel_all(self._handles)      # one engine step for the whole batch, not one per request
        self.wait()

    @property
    def texts(self) -> list[str]:
        with self._lock:
            return [t for per_prompt in self._texts for t in per_prompt]

    @property
    def text(self) -> str:
        return self.texts[0]

    @property
    def outputs(self) -> list:
        self.wait()
        return list(self._outputs)

    @property
    def num_generated_tokens(self) -> int:
        return sum(len(c.token_ids) for o in self._outputs if o is not None for c in o.outputs)

    # -- display ----------------------------------------------------------------------------------
    def _status_line(self) -> str:
        count = f"{len(self.prompts)} prompt{'s' * (len(self.prompts) != 1)}"
        if self.n > 1:
            count += f" × {self.n}"
        if self.error:
            return f"{count} · error: {self.error}"
        if not self.done:
            return f"{count} · generating… {time.perf_counter() - self.started:.1f} s"
        tokens = self.num_generated_tokens
        secs = self.elapsed or 0.0
        reasons = sorted({c.finish_reason for o in self._outputs if o is not None for c in o.outputs})
        state = "interrupted" if self.interrupted else "finished: " + ", ".join(r or "?" for r in reasons)
        rate = f" · {tokens / secs:,.1f} tok/s" if secs > 0 else ""
        return f"{count} · {tokens} tokens in {secs:.2f} s{rate} · {state}"

    def __repr__(self) -> str:
        with self._lock:
            texts = [list(t) for t in self._texts]
        parts = []
        for i, prompt in enumerate(self.prompts):
            for j, text in enumerate(texts[i]):
                label = f"[{i + 1}.{j + 1}] " if self.n > 1 else ""
                parts.append(f"{label}{prompt}\n→ {text}" if self.chat else f"{label}{prompt}{text}")
        return "\n---\n".join(parts) + f"\n({self._status_line()})"

    def _repr_html_(self) -> str:
        with self._lock:
            texts = [list(t) for t in self._texts]
        running = not self.done
        cursor = '<span style="opacity:.5">▍</span>' if running else ""
        items = []
        if self.system:
            items.append(f'<div style="color:#888;font-size:90%;margin-bottom:4px">system: '
                         f'{html.escape(self.system)}</div>')
        for i, prompt in enumerate(self.prompts):
            for j, text in enumerate(texts[i]):
                label = (f'<span style="color:#999;font-size:85%;margin-right:6px">#{i + 1}'
                         f'{"." + str(j + 1) if self.n > 1 else ""}</span>') if len(texts) * self.n > 1 else ""
                if self.chat:
                    body = (f'<div style="color:#666">{label}<b>user</b> {html.escape(prompt)}</div>'
                            f'<div><b style="color:#3b6ea5">assistant</b> {html.escape(text)}{cursor}</div>')
                else:
                    body = (f'{label}<span style="color:#777">{html.escape(prompt)}</span>'
                            f'<span>{html.escape(text)}</span>{cursor}')
                items.append(f'<div style="white-space:pre-wrap;padding:6px 8px;margin:4px 0;'
                             f'border-left:3px solid {"#f0a030" if running else "#4a9"};'
                             f'background:rgba(127,127,127,.06)">{body}</div>')
        foot = f'<div style="color:#888;font-size:85%">{html.escape(self._status_line())}</div>'
        return '<div class="nbinfer-generation">' + "".join(items) + foot + "</div>"


class LiveDisplay:
    """A display-id output that repaints a Generation, at most every REFRESH_S seconds (longer when
    the text is large, so the update stream stays under UPDATE_BYTES_PER_S)."""

    def __init__(self, generation: Generation):
        from IPython.display import display

        self.generation = generation
        self.handle = display(generation, display_id=True)
        self.last = time.monotonic()
        generation._live = self

    @property
    def interval(self) -> float:
        g = self.generation
        # each update carries the text twice (text/plain and text/html) plus markup
        size = 2 * (sum(map(len, g.texts)) + sum(map(len, g.prompts))) + 400 * len(g.prompts) * g.n
        return max(REFRESH_S, size / UPDATE_BYTES_PER_S)

    def refresh(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.handle is not None and (force or now - self.last >= self.interval):
            self.handle.update(self.generation)
            self.last = now

    def follow(self) -> None:
        """Repaint until the generation is done (returns on KeyboardInterrupt by raising it)."""
        g = self.generation
        while not g.done:
            g._changed.wait(REFRESH_S)
            if g._changed.is_set():
                # wait out the rest of the throttle window so bursts of tokens share one update
                time.sleep(max(0.0, self.interval - (time.monotonic() - self.last)))
                g._changed.clear()
                self.refresh()
        self.refresh(force=True)


def in_kernel() -> bool:
    """True in a Jupyter kernel, where display-id updates repaint an output in place. Terminal
    IPython would print every update again, so there we stream plain text to stdout instead."""
    from IPython import get_ipython
    return getattr(get_ipython(), "kernel", None) is not None


def run_foreground(generation: Generation, stream: bool, live_display: bool | None = None) -> None:
    """Stream into the cell until done. The stop button (KeyboardInterrupt) cancels this cell's
    requests -- their blocks are freed first -- and ends the cell with a one-line KeyboardInterrupt
    saying so; the engine keeps serving."""
    live_display = in_kernel() if live_display is None else live_display
    live = LiveDisplay(generation) if stream and live_display else None
    printed = stream and not live_display and len(generation.prompts) * generation.n == 1
    try:
        if live is not None:
            live.follow()
        elif printed:
            _print_stream(generation)
            print(f"({generation._status_line()})")
        else:
            generation.wait()
            from IPython.display import display
            display(generation)
    except KeyboardInterrupt:
        generation.cancel()
        cancelled = count_aborted(generation._handles)
        # a click after every request had finished interrupts the cell, not the generation
        generation.interrupted = cancelled > 0
        if live is not None:
            live.refresh(force=True)
        raise cancelled_interrupt(cancelled) from None


def _print_stream(generation: Generation) -> None:
    """Terminal IPython: the single completion's text as it arrives, then the full result."""
    import sys
    shown = 0
    print(generation.prompts[0], end="", flush=True)
    try:
        while not generation.done:
            generation._changed.wait(REFRESH_S)
            generation._changed.clear()
            text = generation.text
            sys.stdout.write(text[shown:])
            sys.stdout.flush()
            shown = len(text)
    finally:
        print()         # end the streamed line, also when Ctrl-C stops it: what follows starts a line


def run_background(generation: Generation) -> threading.Thread:
    """Return at once; a worker keeps streaming into this cell's display (routed to this cell's
    parent message, which ipykernel 7 requires for output from threads)."""
    live = LiveDisplay(generation)
    return start_in_cell(live.follow, name="nbinfer-generate-background")
