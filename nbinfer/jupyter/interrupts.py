"""The stop button's answer in one line: a KeyboardInterrupt that IPython shows as one sentence.

IPython renders an exception with its `_render_traceback_()` when it has one (the hook ipyparallel
uses for remote errors). Giving a KeyboardInterrupt instance one keeps its type -- the cell still ends
in error with ename "KeyboardInterrupt", so Run All stops there -- while the user reads one sentence
instead of ~20 lines of nbinfer's frames."""
from __future__ import annotations


def one_line_interrupt(message: str) -> KeyboardInterrupt:
    error = KeyboardInterrupt(message)
    error._render_traceback_ = lambda: [message]
    return error


def count_aborted(handles) -> int:
    """How many of these finished requests ended aborted (cancelled); failed ones do not count."""
    aborted = 0
    for h in handles:
        try:
            output = h.result()
        except Exception:
            continue
        aborted += any(c.finish_reason == "abort" for c in output.outputs)
    return aborted


def cancelled_interrupt(cancelled: int) -> KeyboardInterrupt:
    """The interrupt to raise once a cell's requests were cancelled: it says how many really were, and
    claims nothing when every one had already finished (a click just too late)."""
    if not cancelled:
        return one_line_interrupt("interrupted after the generation had finished; nothing was cancelled")
    many = cancelled != 1
    return one_line_interrupt(f"interrupted: {cancelled} request{'s' * many} cancelled, "
                              f"{'their' if many else 'its'} KV blocks freed")
