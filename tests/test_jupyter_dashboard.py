"""The dashboard: frames from stats, widget updates (one message per widget per tick), the live
publisher against a running engine, `%nbinfer dashboard` and its static fallback."""
import dataclasses
import threading
import time

import numpy as np
import pytest

pytest.importorskip("anywidget")
from IPython.core.displaypub import CapturingDisplayPublisher  # noqa: E402
from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402

from nbinfer import EngineStats, RequestStats, SamplingParams  # noqa: E402
from nbinfer.jupyter import session  # noqa: E402
from nbinfer.jupyter.frame import (CACHED, FIRST_REQUEST, FREE, SHARED, ColourSlots, build_frame,  # noqa: E402
                                   downsample)
from nbinfer.jupyter.status import StatusView, status_html, status_text  # noqa: E402


def fake_stats(requests: dict, cached=(), total=10, **kw) -> EngineStats:
    reqs = {rid: RequestStats(rid, "running", 20, out, 100, tuple(blocks)) for rid, (blocks, out) in requests.items()}
    used = len({b for blocks, _ in requests.values() for b in blocks})
    fields = dict(blocks_total=total, blocks_free=total - used - len(cached), blocks_used=used,
                  blocks_cached=len(cached), block_size=16, num_running=len(reqs), num_waiting=0,
                  num_preempted_total=0, prompt_tokens_total=40, generation_tokens_total=7, prefix_hit_tokens=16,
                  prefill_tokens_per_s=100.0, decode_tokens_per_s=50.0, weights_bytes=2**20, kv_cache_bytes=2**21,
                  requests=reqs, cached_block_ids=tuple(cached), model="tiny", device="cpu", dtype="float32")
    fields.update(kw)
    return EngineStats(**fields)


# -- frames -----------------------------------------------------------------------------------------

def test_block_codes_free_used_cached_shared():
    colours = ColourSlots()
    f = build_frame(fake_stats({"req-1": ((0, 1, 2), 3), "req-2": ((2, 3), 4)}, cached=(5, 6)), colours)
    s1, s2 = colours.slots["req-1"], colours.slots["req-2"]
    assert s1 != s2
    codes = list(f.blocks)
    assert codes == [FIRST_REQUEST + s1, FIRST_REQUEST + s1, SHARED, FIRST_REQUEST + s2, FREE, CACHED, CACHED,
                     FREE, FREE, FREE]
    assert f.blocks_shared == 1 and f.occupancy == pytest.approx(0.4)
    assert [r.request_id for r in f.rows] == ["req-1", "req-2"]
    assert f.rows[0].colour != f.rows[1].colour


def test_engine_reported_shared_blocks_count_too():
    # n > 1: one request's samples share blocks; an engine that reports shared_block_ids is believed
    if "shared_block_ids" not in EngineStats.__dataclass_fields__:
        pytest.skip("this engine's EngineStats has no shared_block_ids")
    f = build_frame(fake_stats({"req-1": ((0, 1), 3)}, shared_block_ids=(0,)), ColourSlots())
    assert f.blocks[0] == SHARED and f.blocks[1] == FIRST_REQUEST and f.blocks_shared == 1


def test_request_colours_are_stable_across_frames():
    colours = ColourSlots()
    build_frame(fake_stats({"req-1": ((0,), 1), "req-2": ((1,), 1)}), colours)
    slot2 = colours.slots["req-2"]
    build_frame(fake_stats({"req-2": ((1,), 2), "req-9": ((2,), 1)}), colours)
    assert colours.slots["req-2"] == slot2          # kept its colour
    assert colours.slots["req-9"] not in (slot2,)    # a newcomer reuses a freed slot, never a live one
    assert "req-1" not in colours.slots


def test_progress_of_requests_with_several_samples():
    stats = fake_stats({"req-1": ((0,), 96), "req-2": ((1,), 96)})           # max_tokens 100
    stats.requests["req-1"] = dataclasses.replace(stats.requests["req-1"], n=2)   # -n 2: 2 x 100 tokens
    rows = {r.request_id: r for r in build_frame(stats, ColourSlots()).rows}
    assert rows["req-1"].max_tokens == 200 and rows["req-1"].progress == pytest.approx(0.48)
    assert rows["req-2"].max_tokens == 100


def test_requests_sort_numerically():
    f = build_frame(fake_stats({"req-10": ((0,), 1), "req-9": ((1,), 1), "req-100": ((2,), 1)}), ColourSlots())
    assert [r.request_id for r in f.rows] == ["req-9", "req-10", "req-100"]


def test_huge_pools_are_downsampled_busiest_first():
    codes = np.zeros(20000, dtype=np.uint8)
    codes[5] = CACHED
    codes[19999] = FIRST_REQUEST + 4
    cells, group = downsample(codes, 8192)
    assert len(cells) <= 8192 and group == 3
    assert cells[5 // 3] == CACHED and cells[19999 // 3] == FIRST_REQUEST + 4
    assert int((cells != 0).sum()) == 2


def test_status_text_and_html():
    f = build_frame(fake_stats({"req-1": ((0, 1, 2), 3)}, cached=(5,)), ColourSlots())
    text = status_text(f)
    assert "30% used" in text and "3 used / 1 cached / 6 free of 10 blocks × 16 tokens" in text
    assert "req-1" in text and "prefill 100" in text and "decode 50" in text
    html = status_html(f, with_block_map=True)
    assert "<svg" in html and "req-1" in html and "<table" in html
    assert "no model is loaded" in repr(StatusView(None))


# -- widgets ----------------------------------------------------------------------------------------

@pytest.fixture
def dashboard():
    from nbinfer.jupyter.dashboard import Dashboard
    d = Dashboard()
    yield d
    from nbinfer.jupyter.dashboard import _close_tree
    _close_tree(d.root)


def count_messages(widgets):
    counts = {id(w): 0 for w in widgets}
    for w in widgets:
        real = w.comm.send

        def send(*a, _w=w, _real=real, **kw):
            counts[id(_w)] += 1
            return _real(*a, **kw)
        w.comm.send = send
    return counts


def test_one_message_per_widget_per_frame(dashboard):
    counts = count_messages(dashboard.widgets)
    frame = build_frame(fake_stats({"req-1": ((0, 1, 2), 3), "req-2": ((2, 3), 4)}, cached=(5,)), dashboard.colours)
    dashboard.apply(frame, [1.0, 2.0], [3.0, 4.0])
    assert all(c <= 1 for c in counts.values()), counts
    assert sum(counts.values()) >= 5
    assert dashboard.block_map.blocks == frame.blocks
    assert dashboard.occupancy.value == pytest.approx(0.4)
    assert "req-1" in dashboard.table.value and "req-2" in dashboard.table.value
    assert dashboard.sparkline.decode == [3.0, 4.0]
    # the same frame again changes nothing, so nothing is sent
    before = dict(counts)
    dashboard.apply(frame, [1.0, 2.0], [3.0, 4.0])
    assert counts == before


def test_widget_bundle_carries_static_fallback(dashboard):
    frame = build_frame(fake_stats({"req-1": ((0, 1), 3)}), dashboard.colours)
    dashboard.apply(frame, [], [])
    data, _ = dashboard.root._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "<svg" in data["text/html"] and "req-1" in data["text/html"]
    assert "KV cache" in data["text/plain"]


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()           # shared with other test modules in this process
    before = set(shell.user_ns)
    shell.run_line_magic("load_ext", "nbinfer")
    yield shell
    for name in set(shell.user_ns) - before:
        del shell.user_ns[name]


def test_dashboard_magic_displays_widget(ip, llama_dir, monkeypatch):
    from nbinfer.jupyter import generation
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 64")
    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    ip.run_line_magic("nbinfer", "dashboard")            # terminal IPython: a static snapshot
    data = pub.outputs[-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" not in data and "KV cache" in data["text/plain"]
    monkeypatch.setattr(generation, "in_kernel", lambda: True)
    ip.run_line_magic("nbinfer", "dashboard")
    data = pub.outputs[-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data and "<svg" in data["text/html"]
    ip.run_line_magic("nbinfer", "dashboard --static")
    data = pub.outputs[-1]["data"]
    assert "<svg" in data["text/html"] and "application/vnd.jupyter.widget-view+json" not in data
    with pytest.raises(UsageError, match="--interval must be at least 0.1"):
        ip.run_line_magic("nbinfer", "dashboard --interval 0.05")


def test_live_publisher_follows_a_running_generation(ip, llama_dir):
    from nbinfer.jupyter.dashboard import get_dashboard
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 64")
    llm = session.current_llm()
    dashboard, publisher = get_dashboard(interval=0.1)
    seen_used, seen_occupancy, seen_rows = [], [], []

    def watch(change):
        seen_used.append(sum(1 for b in change["new"] if b >= SHARED))

    dashboard.block_map.observe(watch, "blocks")
    dashboard.occupancy.observe(lambda c: seen_occupancy.append(c["new"]), "value")
    dashboard.table.observe(lambda c: seen_rows.append("req-" in c["new"]), "value")
    frames0 = publisher.frames
    started = time.monotonic()
    prompts = ["Once upon a time"] * 3 + ["A paged KV cache stores keys and values"] * 3
    llm.generate(prompts, SamplingParams(max_tokens=150, ignore_eos=True, seed=0))
    time.sleep(0.5)                                   # an idle frame after the run
    elapsed = time.monotonic() - started
    dashboard.block_map.unobserve(watch, "blocks")
    assert max(seen_used) > 0 and max(seen_occupancy) > 0 and any(seen_rows)
    assert dashboard.occupancy.value == 0.0           # everything freed: the last frame shows it
    assert "no requests in flight" in dashboard.table.value
    assert publisher.frames - frames0 <= elapsed / 0.1 + 3   # at most 10 frames a second


def test_publisher_follows_unload_and_load(ip, llama_dir):
    from nbinfer.jupyter.dashboard import get_dashboard
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 48")
    dashboard, publisher = get_dashboard(interval=0.1)
    publisher.tick()
    assert "0/48 blocks" in dashboard.occupancy_label.value
    ip.run_line_magic("nbinfer", "unload")
    deadline = time.monotonic() + 5
    while "no model loaded" not in dashboard.header.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "no model loaded" in dashboard.header.value and dashboard.block_map.blocks == b""
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 40")
    deadline = time.monotonic() + 5
    while "/40 blocks" not in dashboard.occupancy_label.value and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(dashboard.block_map.blocks) == 40


def test_publisher_survives_concurrent_ticks(ip, llama_dir):
    from nbinfer.jupyter.dashboard import get_dashboard
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 32")
    dashboard, publisher = get_dashboard(interval=0.1)
    errors = []

    def hammer():
        try:
            for _ in range(50):
                publisher.tick()
        except Exception as e:       # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and publisher.running
    session.unload_llm()
