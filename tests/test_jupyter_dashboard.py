"""The dashboard: frames from stats (block grid, shares, labels), one message per frame, the static
snapshot kept at the last frame, the live publisher against a running engine, `%nbinfer dashboard`."""
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
from server_testing import slow_steps  # noqa: E402
from nbinfer.jupyter.block_grid import (CACHED, FIRST_REQUEST, FREE, GRID_COLUMNS, GRID_ROWS,  # noqa: E402
                                        PER_BLOCK_LIMIT, SHARED)
from nbinfer.jupyter.frame import ColourSlots, build_frame, percent  # noqa: E402
from nbinfer.jupyter.status import StatusView, fill_height, status_html, status_text  # noqa: E402


def fake_stats(requests: dict, cached=(), total=10, n=1, **kw) -> EngineStats:
    reqs = {rid: RequestStats(rid, "running", 20, out, 100, tuple(blocks), n=n)
            for rid, (blocks, out) in requests.items()}
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
    assert s1 != s2 and f.grid.per_block and f.grid.columns == 0
    assert list(f.grid.codes) == [FIRST_REQUEST + s1, FIRST_REQUEST + s1, SHARED, FIRST_REQUEST + s2, FREE, CACHED,
                                  CACHED, FREE, FREE, FREE]
    assert list(f.grid.used_counts()) == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert list(f.grid.cached_counts()) == [0, 0, 0, 0, 0, 1, 1, 0, 0, 0]
    # the hover of a shared block names its holders; a block with one holder needs no list
    assert f.grid.owners == {"2": [1, 0, s1, 1, s2, 1]}
    assert f.blocks_shared == 1 and f.occupancy == pytest.approx(0.4)
    assert [r.request_id for r in f.rows] == ["req-1", "req-2"]
    assert f.rows[0].colour != f.rows[1].colour


def test_engine_reported_shared_blocks_count_too():
    # n > 1: one request's samples share blocks; an engine that reports shared_block_ids is believed
    f = build_frame(fake_stats({"req-1": ((0, 1), 3)}, shared_block_ids=(0,)), ColourSlots())
    assert f.grid.codes[0] == SHARED and f.grid.codes[1] == FIRST_REQUEST and f.blocks_shared == 1


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


def test_pools_up_to_the_limit_draw_one_square_per_block():
    f = build_frame(fake_stats({"req-1": ((0, PER_BLOCK_LIMIT - 1), 1)}, total=PER_BLOCK_LIMIT), ColourSlots())
    assert f.grid.cells == PER_BLOCK_LIMIT and f.grid.per_block


@pytest.mark.parametrize("total", [8192, 200_000, PER_BLOCK_LIMIT + 1])
def test_big_pools_are_a_fixed_grid_of_block_ranges(total):
    # 8,192 blocks (the default CPU pool) used to be 8,192 4-pixel squares: a grey rectangle with a dash
    colours = ColourSlots()
    small = tuple(range(40, 76))                               # 36 blocks of one request
    big = tuple(range(total - 900, total))                     # 900 blocks of another, at the end
    f = build_frame(fake_stats({"req-1": (small, 1), "req-2": (big, 1)}, cached=(100, 101, 5000 % total),
                               total=total), colours)
    g = f.grid
    assert g.cells == GRID_COLUMNS * GRID_ROWS and g.columns == GRID_COLUMNS and not g.per_block
    ranges = [g.block_range(i) for i in range(g.cells)]
    assert ranges[0][0] == 0 and ranges[-1][1] == total                    # every block in exactly one cell
    assert all(a[1] == b[0] and a[1] > a[0] for a, b in zip(ranges, ranges[1:]))
    used, cached = g.used_counts(), g.cached_counts()
    assert used.sum() == 936 and cached.sum() == 3
    for i in np.flatnonzero(used):                              # each cell counts its own blocks
        lo, hi = ranges[i]
        assert used[i] == len([b for b in small + big if lo <= b < hi])
    s1, s2 = colours.slots["req-1"], colours.slots["req-2"]
    first = int(np.flatnonzero(used)[0])
    assert g.codes[first] == FIRST_REQUEST + s1
    assert g.owners[str(first)][:2] == [0, 0] and g.owners[str(first)][2] == s1   # hover: req-1 and its blocks
    assert g.codes[g.cells - 1] == FIRST_REQUEST + s2 and used[g.cells - 1] == ranges[-1][1] - ranges[-1][0]
    cached_cell = int(np.flatnonzero(cached)[0])
    assert g.codes[cached_cell] in (CACHED, FIRST_REQUEST + s1)


def test_a_grid_cell_names_its_biggest_holders_and_counts_the_rest():
    colours = ColourSlots()
    total = 1024 * 10                                           # 10 blocks per cell
    reqs = {"req-1": ((0, 1, 2, 3), 1), "req-2": ((3, 4), 1), "req-3": ((5,), 1), "req-4": ((6,), 1),
            "req-5": ((7,), 1)}
    g = build_frame(fake_stats(reqs, total=total), colours).grid
    slot = colours.slots
    assert g.used_counts()[0] == 8
    assert g.owners["0"] == [1, 2, slot["req-1"], 4, slot["req-2"], 2, slot["req-3"], 1]   # 1 shared, 2 more
    assert g.codes[0] == FIRST_REQUEST + slot["req-1"]


def test_a_lone_used_block_in_a_huge_pool_is_visible():
    f = build_frame(fake_stats({"req-1": ((123_456,), 1)}, total=200_000), ColourSlots())
    cell = 123_456 * f.grid.cells // 200_000
    lo, hi = f.grid.block_range(cell)
    assert f.grid.used_counts()[cell] == 1 and hi - lo >= 195
    assert fill_height(1, hi - lo, 9) >= 2                     # drawn at least 2 px high
    assert fill_height(hi - lo - 1, hi - lo, 9) == 8           # nearly full never looks full
    assert fill_height(hi - lo, hi - lo, 9) == 9


def test_small_shares_are_not_rounded_to_zero():
    # the dashboard said "0% used · 0/8192 blocks" with 36 blocks in use
    assert percent(36 / 8192) == "0.4%"
    assert percent(0) == "0%" and percent(1) == "100%" and percent(0.37) == "37%"
    assert percent(1 / 200_000) == "<0.1%" and percent(8191 / 8192) == ">99.9%" and percent(0.995) == "99.5%"
    f = build_frame(fake_stats({"req-1": (tuple(range(36)), 1)}, total=8192), ColourSlots())
    assert "0.4% used" in status_text(f) and "<b>0.4%</b> used" in status_html(f)
    from nbinfer.jupyter.dashboard import frame_state
    assert ">0.4%</b>" in frame_state(f, ColourSlots())["occupancy_label"]


def test_sequences_and_requests_are_labelled():
    # -n 2: the header counted 15 sequences as "15 running" over a table of 8 requests
    reqs = {f"req-{i}": ((2 * i, 2 * i + 1), 4) for i in range(8)}
    f = build_frame(fake_stats(reqs, total=64, n=2, num_running=15), ColourSlots())
    from nbinfer.jupyter.dashboard import frame_state
    state = frame_state(f, ColourSlots())
    assert "15 sequences running · 0 waiting" in state["header"]
    assert ">8</span> requests" in state["batch_title"] and "n = samples per request" in state["batch_title"]
    assert "<th" in state["table"] and ">n</th>" in state["table"]
    assert "sequences  15 running · 0 waiting · 8 requests" in status_text(f)
    assert "15 sequences running · 0 waiting · 8 requests" in status_html(f)
    one = build_frame(fake_stats({"req-1": ((0,), 1)}), ColourSlots())
    assert ">n</th>" not in frame_state(one, ColourSlots())["table"]    # no n column when every n is 1


def test_status_text_and_html():
    f = build_frame(fake_stats({"req-1": ((0, 1, 2), 3)}, cached=(5,)), ColourSlots())
    text = status_text(f)
    assert "30% used" in text and "3 used / 1 cached / 6 free of 10 blocks × 16 tokens" in text
    assert "req-1" in text and "prefill 100" in text and "decode 50" in text
    html = status_html(f, with_block_map=True)
    assert "<svg" in html and "req-1" in html and "<table" in html
    assert "no model is loaded" in repr(StatusView(None))


def test_static_block_map_of_a_big_pool_is_a_short_grid():
    f = build_frame(fake_stats({"req-1": (tuple(range(36)), 1)}, total=200_000), ColourSlots())
    html = status_html(f, with_block_map=True)
    height = int(html.split('<svg width="')[1].split('height="')[1].split('"')[0])
    assert height <= 200 and "1 square = 195 blocks" in html


# -- the widget -------------------------------------------------------------------------------------

@pytest.fixture
def dashboard():
    from nbinfer.jupyter.dashboard import Dashboard
    d = Dashboard()
    yield d
    d.close()


def sent_messages(widget) -> list:
    sent = []
    real = widget.comm.send

    def send(*a, **kw):
        sent.append(kw.get("data", a[0] if a else None))
        return real(*a, **kw)
    widget.comm.send = send
    return sent


def test_a_frame_is_one_message(dashboard):
    # the batch table used to arrive ahead of the map and the memory bar: one widget per part, one
    # message each. Now one frame = one stats snapshot = one message carrying every part.
    sent = sent_messages(dashboard.view)
    frame = build_frame(fake_stats({"req-1": ((0, 1, 2), 3), "req-2": ((2, 3), 4)}, cached=(5,)), dashboard.colours)
    dashboard.apply(frame, [1.0, 2.0], [3.0, 4.0])
    assert len(sent) == 1, sent
    state = set(sent[0]["state"]) | {path[0] for path in sent[0].get("buffer_paths", [])}   # bytes ride as buffers
    assert {"header", "occupancy", "occupancy_label", "codes", "used", "cached", "caption", "rates", "memory",
            "batch_title", "table", "decode", "frame_id"} <= state
    view = dashboard.view
    assert view.codes == frame.grid.codes and view.occupancy == pytest.approx(0.4)
    assert "req-1" in view.table and "req-2" in view.table and view.decode == [3.0, 4.0]
    frame_id = view.frame_id
    dashboard.apply(frame, [1.0, 2.0], [3.0, 4.0])            # nothing changed: nothing sent
    assert len(sent) == 1 and view.frame_id == frame_id
    later = build_frame(fake_stats({"req-2": ((2, 3), 5)}, cached=(5,)), dashboard.colours)
    dashboard.apply(later, [1.0, 2.0], [3.0, 4.0])
    assert len(sent) == 2 and view.frame_id == frame_id + 1
    assert "req-1" not in view.table and "req-1" not in view.owners.values()


def test_widget_view_and_snapshot_outputs(dashboard, monkeypatch):
    # the saved notebook kept the FIRST frame as its static fallback: the fallback is now an output of
    # its own, brought up to the last frame (the live view is never re-rendered for it)
    from nbinfer.jupyter import snapshot
    from nbinfer.jupyter.widgets import SNAPSHOT_CLASS
    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(InteractiveShell.instance(), "display_pub", pub)
    clock = [100.0]
    dashboard.snapshot.clock = lambda: clock[0]
    first = build_frame(fake_stats({"req-1": ((0, 1), 3)}), dashboard.colours)
    dashboard.apply(first, [], [])
    dashboard.show()
    view_output, snap = pub.outputs
    assert set(view_output["data"]) == {"application/vnd.jupyter.widget-view+json"}
    assert SNAPSHOT_CLASS in snap["data"]["text/html"] and "req-1" in snap["data"]["text/html"]
    assert "<svg" in snap["data"]["text/html"] and "KV cache" in snap["data"]["text/plain"]
    display_id = snap["transient"]["display_id"]
    last = build_frame(fake_stats({"req-2": ((4, 5, 6), 9)}, cached=(0, 1)), dashboard.colours)
    dashboard.apply(last, [], [])
    assert len(pub.outputs) == 2                               # within the interval: not yet
    clock[0] += snapshot.INTERVAL_S
    dashboard.apply(last, [], [])                              # the next tick sends the current frame
    update = pub.outputs[-1]
    assert update["update"] and update["transient"]["display_id"] == display_id
    assert "req-2" in update["data"]["text/html"] and "req-1" not in update["data"]["text/html"]
    assert "2 cached" in update["data"]["text/plain"]
    clock[0] += 10
    dashboard.apply(last, [], [])                              # unchanged: no update
    assert len(pub.outputs) == 3
    for _ in range(snapshot.MAX_OUTPUTS + 2):                  # shown again and again: the newest are kept
        dashboard.show()
    clock[0] += 10
    dashboard.apply(first, [], [])
    updated = [o["transient"]["display_id"] for o in pub.outputs if o["update"]][1:]
    newest = [o["transient"]["display_id"] for o in pub.outputs if not o["update"] and o.get("transient")]
    assert updated == newest[-snapshot.MAX_OUTPUTS:]


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()           # shared with other test modules in this process
    before = set(shell.user_ns)
    shell.run_line_magic("load_ext", "nbinfer")
    yield shell
    from nbinfer.jupyter.dashboard import close_dashboard
    close_dashboard()                             # its publisher and its end-of-cell hook go too
    assert not any(getattr(cb, "__name__", "") == "on_cell_end" for cb in shell.events.callbacks["post_run_cell"])
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
    ip.run_line_magic("nbinfer", "dashboard")            # the live view, then its snapshot
    view, snap = pub.outputs[-2]["data"], pub.outputs[-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" in view and "<svg" in snap["text/html"]
    assert "0 used / 0 cached / 64 free of 64 blocks" in snap["text/html"] and snap["text/plain"].startswith("model")
    ip.run_line_magic("nbinfer", "dashboard --static")
    data = pub.outputs[-1]["data"]
    assert "<svg" in data["text/html"] and "application/vnd.jupyter.widget-view+json" not in data
    with pytest.raises(UsageError, match="--interval must be at least 0.1"):
        ip.run_line_magic("nbinfer", "dashboard --interval 0.05")


def test_live_publisher_follows_a_running_generation(ip, llama_dir, monkeypatch):
    from nbinfer.jupyter.dashboard import get_dashboard
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 64")
    llm = session.current_llm()
    slow_steps(llm, monkeypatch, 0.005)       # the run lasts > 0.75 s, several of the publisher's frames
    dashboard, publisher = get_dashboard(interval=0.1)
    seen_used, seen_occupancy, seen_rows = [], [], []

    def watch(change):
        seen_used.append(int(np.frombuffer(change["new"], dtype="<u2").sum()))

    view = dashboard.view
    view.observe(watch, "used")
    view.observe(lambda c: seen_occupancy.append(c["new"]), "occupancy")
    view.observe(lambda c: seen_rows.append("req-" in c["new"]), "table")
    frames0 = publisher.frames
    started = time.monotonic()
    prompts = ["Once upon a time"] * 3 + ["A paged KV cache stores keys and values"] * 3
    llm.generate(prompts, SamplingParams(max_tokens=150, ignore_eos=True, seed=0))
    time.sleep(0.5)                                   # an idle frame after the run
    elapsed = time.monotonic() - started
    view.unobserve(watch, "used")
    assert max(seen_used) > 0 and max(seen_occupancy) > 0 and any(seen_rows)
    assert view.occupancy == 0.0                      # everything freed: the last frame shows it
    assert "no requests in flight" in view.table
    assert publisher.frames - frames0 <= elapsed / 0.1 + 3   # at most 10 frames a second


def test_snapshot_is_current_at_the_end_of_every_cell(ip, llama_dir, monkeypatch):
    # "Run All" then save, or a notebook run headless: the snapshot must hold the frame the cell ended on,
    # even when the last refresh was within the throttle interval
    from nbinfer.jupyter import generation
    from nbinfer.jupyter.dashboard import get_dashboard
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 64")
    pub = CapturingDisplayPublisher()
    monkeypatch.setattr(ip, "display_pub", pub)
    monkeypatch.setattr(generation, "in_kernel", lambda: True)
    ip.run_line_magic("nbinfer", "dashboard")
    dashboard, publisher = get_dashboard()
    dashboard.snapshot.clock = lambda: 0.0                   # the throttle never lets a tick through
    shown = len(pub.outputs)
    ip.run_cell("from nbinfer import SamplingParams\nfrom nbinfer.jupyter.session import get_llm\n"
                "_ = get_llm().generate(['Once upon a time'] * 3, SamplingParams(max_tokens=20, ignore_eos=True))")
    updates = [o for o in pub.outputs[shown:] if o["update"]]
    assert updates, "no snapshot update at the end of the cell"
    text = updates[-1]["data"]["text/plain"]
    assert "60 generated" in text and "0 used /" in text, text
    session.unload_llm()


def test_publisher_follows_unload_and_load(ip, llama_dir):
    from nbinfer.jupyter.dashboard import get_dashboard
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 48")
    dashboard, publisher = get_dashboard(interval=0.1)
    publisher.tick()
    view = dashboard.view
    assert "0/48 blocks" in view.occupancy_label
    ip.run_line_magic("nbinfer", "unload")
    deadline = time.monotonic() + 5
    while "no model loaded" not in view.header and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "no model loaded" in view.header and view.codes == b""
    ip.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 40")
    deadline = time.monotonic() + 5
    while "/40 blocks" not in view.occupancy_label and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(view.codes) == 40


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
