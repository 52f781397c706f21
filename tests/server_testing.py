"""Helpers for the server tests: a served engine on a free loopback port, stopped by the test."""
from __future__ import annotations

import contextlib
import time


@contextlib.contextmanager
def served(model=None, api_key=None, **llm_options):
    """(llm, server) for the bundled default model (or `model`) on 127.0.0.1, port chosen by the OS."""
    from nbinfer import LLM
    from nbinfer.server import serve_in_thread

    llm = LLM(model, **{"num_kv_blocks": 256, **llm_options})
    try:
        with serve_in_thread(llm, host="127.0.0.1", port=0, api_key=api_key) as server:
            yield llm, server
    finally:
        llm.shutdown()


def wait_until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def idle(llm) -> bool:
    s = llm.stats()
    return s.num_running == 0 and s.num_waiting == 0 and s.blocks_used == 0


def slow_steps(llm, monkeypatch, seconds: float = 0.02) -> None:
    """Every engine step of `llm` takes `seconds` more, so a test's long request is still running when
    the test looks (the C++ CPU step generates 300 tiny-model tokens in a fraction of a second)."""
    run = llm.engine.runner.run

    def slowed(batch):
        time.sleep(seconds)
        return run(batch)

    monkeypatch.setattr(llm.engine.runner, "run", slowed)
