"""Output from our threads (background generation, dashboard publisher) into the right cell.

ipykernel >= 7 no longer guesses which cell a thread's output belongs to: a thread must name its
parent message explicitly, or its output lands in whatever cell ran last. We capture the parent in
the cell that starts the work and install it in the worker thread. Older kernels (and plain
IPython, where there is no parent at all) need nothing.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Callable


def capture_parent():
    """The parent header of the cell running now, or None outside a kernel."""
    from IPython import get_ipython

    shell = get_ipython()
    get_parent = getattr(shell, "get_parent", None)
    if get_parent is None:
        return None
    try:
        return get_parent()
    except Exception:
        return None


@contextlib.contextmanager
def routed_to(parent):
    """Inside this block, the current thread's displays and prints belong to `parent`'s cell."""
    from IPython import get_ipython

    shell = get_ipython()
    set_thread_parent = getattr(shell, "set_thread_parent", None)
    if not parent or set_thread_parent is None:
        # ipykernel < 7 tracks thread origins itself; plain IPython has one output stream
        yield
        return
    tokens = set_thread_parent(parent)
    try:
        yield
    finally:
        shell.reset_thread_parent(tokens)


def start_in_cell(target: Callable[[], None], name: str, parent=None) -> threading.Thread:
    """Start a daemon thread whose output goes to the cell that called this (or to `parent`)."""
    parent = capture_parent() if parent is None else parent

    def run():
        with routed_to(parent):
            target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
