"""The engine's typed protocol: messages through the mailbox, futures for calls, the RequestSink the
engine writes to, and merge_streams() reading many handles on one thread."""
import threading
import time
from concurrent.futures import Future

import pytest

from nbinfer import SamplingParams
from nbinfer.engine.handle import RequestHandle, StreamEvent, merge_streams
from nbinfer.engine.messages import AddRequest, Call
from nbinfer.engine.sequence import Request
from nbinfer.engine.sink import RequestSink

LONG = ("Once upon a time there was a little model that wanted to write stories. "
        "A paged KV cache stores keys and values in fixed-size blocks. ")


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


def read_all(handles):
    """Everything merge_streams yields, plus how many threads were alive at most meanwhile."""
    events, peak = [], threading.active_count()
    for ev in merge_streams(handles):
        events.append(ev)
        peak = max(peak, threading.active_count())
    return events, peak


def test_merge_streams_reads_many_handles_on_one_thread(shared_llm):
    prompts = [f"Prompt {i}: The quick brown fox" for i in range(12)]
    threads_before = threading.active_count()
    handles = [shared_llm.submit(p, SamplingParams(max_tokens=20 - i, seed=i, ignore_eos=True))
               for i, p in enumerate(prompts)]
    events, peak = read_all(handles)
    assert peak <= threads_before + 2                      # no reader thread per handle
    ends = [ev for ev in events if ev.finished]
    assert sorted(ev.handle for ev in ends) == list(range(12)) and events[-1].finished
    for pos, h in enumerate(handles):
        mine = [ev for ev in events if ev.handle == pos]
        assert mine[-1] == StreamEvent(pos, None, "", finished=True)       # the end comes last
        assert "".join(ev.text for ev in mine) == h.result(timeout=0).outputs[0].text
    # arrival order: the order the engine finished them (it stamps finished_time just before it
    # writes the end), not handle order -- the shorter ones, submitted later, end first
    order = [ev.handle for ev in ends]
    finished = [handles[p].result().metrics.finished_time for p in order]
    assert finished == sorted(finished) and order != sorted(order)


def test_merge_streams_with_n_and_a_cancel(shared_llm):
    many = shared_llm.submit("The quick brown fox", SamplingParams(n=3, max_tokens=10, seed=1, ignore_eos=True))
    long = shared_llm.submit(LONG, SamplingParams(max_tokens=400, ignore_eos=True))
    done_first = shared_llm.submit("A paged", SamplingParams(max_tokens=2))
    done_first.result(timeout=30)                          # finished before the merge: events still come
    texts: dict[tuple[int, int], str] = {}
    ended = []
    for ev in merge_streams([many, long, done_first]):
        if ev.finished:
            ended.append(ev.handle)
            if ev.handle == 0:
                long.cancel()                              # cancel mid-stream: its end event still comes
            continue
        texts[ev.handle, ev.index] = texts.get((ev.handle, ev.index), "") + ev.text
    assert sorted(ended) == [0, 1, 2]
    out = many.result()
    assert [texts.get((0, c.index), "") for c in out.outputs] == [c.text for c in out.outputs]
    assert {i for (h, i) in texts if h == 0} == {0, 1, 2}
    assert long.result().outputs[0].finish_reason == "abort"
    assert texts.get((2, 0), "") == done_first.result().outputs[0].text
    assert shared_llm.stats().blocks_used == 0


def test_merge_streams_refuses_a_handle_twice_and_takes_over_its_stream(shared_llm):
    h = shared_llm.submit("The", SamplingParams(max_tokens=3))
    with pytest.raises(ValueError, match="same handle twice"):
        merge_streams([h, h])
    events = list(merge_streams([h]))
    assert events[-1].finished
    with pytest.raises(RuntimeError, match="merge_streams"):
        list(h.stream())
    with pytest.raises(ValueError, match="already in a merge_streams"):
        merge_streams([h])
    assert list(merge_streams([])) == []


def test_merge_streams_ends_with_a_failed_handle_whose_result_raises(llama_dir):
    from nbinfer import LLM
    llm = LLM(llama_dir, num_kv_blocks=32, max_num_seqs=1)
    handles = [llm.submit(LONG, SamplingParams(max_tokens=300, ignore_eos=True)) for _ in range(3)]
    stream = merge_streams(handles)
    llm.shutdown()
    events = list(stream)
    assert sorted(ev.handle for ev in events if ev.finished) == [0, 1, 2]
    for h in handles:
        with pytest.raises(RuntimeError, match="shut down"):
            h.result(timeout=5)
