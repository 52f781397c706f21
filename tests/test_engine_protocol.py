"""The engine's typed protocol: messages through the mailbox, futures for calls, the RequestSink the
engine writes to."""
import threading
import time
from concurrent.futures import Future

import pytest

from nbinfer import SamplingParams
from nbinfer.engine.handle import RequestHandle
from nbinfer.engine.messages import AddRequest, Call
from nbinfer.engine.sequence import Request
from nbinfer.engine.sink import RequestSink


class RecordingSink:
    """A sink that is not a RequestHandle: the engine must need nothing else."""

    def __init__(self):
        self.deltas, self.output, self.error = [], None, None
        self.done = threading.Event()

    def on_delta(self, index, text):
        self.deltas.append((index, text))

    def on_finish(self, output):
        self.output = output
        self.done.set()

    def on_error(self, error):
        self.error = error
        self.done.set()


def test_the_engine_writes_to_any_request_sink(shared_llm):
    engine = shared_llm.engine
    params = SamplingParams(max_tokens=12, seed=2, n=2, ignore_eos=True)
    ids = shared_llm.tokenizer.encode("The quick brown fox")
    sink = RecordingSink()
    assert isinstance(sink, RequestSink) and issubclass(RequestHandle, RequestSink)
    engine._live_ids.add("custom-sink")
    req = Request("custom-sink", None, ids, params, 12, time.monotonic())
    req.sink = sink
    engine.mailbox.post(AddRequest(req))
    assert sink.done.wait(30) and sink.error is None
    for c in sink.output.outputs:
        assert "".join(t for i, t in sink.deltas if i == c.index) == c.text
        assert len(c.token_ids) == 12


def test_calls_resolve_their_future_with_the_value_or_the_error(shared_llm):
    engine = shared_llm.engine
    assert engine.call(lambda: threading.current_thread().name) == "nbinfer-engine"
    with pytest.raises(ZeroDivisionError):
        engine.call(lambda: 1 / 0)
    future = Future()
    engine.mailbox.post(Call(lambda: 7, future))
    assert future.result(timeout=30) == 7


def test_messages_after_shutdown_are_refused_through_one_path(llama_dir):
    from nbinfer import LLM
    llm = LLM(llama_dir, num_kv_blocks=16)
    engine = llm.engine
    engine.shutdown()
    future = Future()
    engine.mailbox.post(Call(lambda: 1, future))          # posted after the engine thread left
    with pytest.raises(RuntimeError, match="shut down"):
        future.result(timeout=5)
    with pytest.raises(RuntimeError, match="shut down"):
        engine.call(lambda: 1, timeout=5)
    sink = RecordingSink()
    req = Request("late", None, [1, 2, 3], SamplingParams(), 4, time.monotonic())
    req.sink = sink
    engine.mailbox.post(AddRequest(req))
    assert sink.done.is_set() and "shut down" in str(sink.error)
