"""The live dashboard: one anywidget (widgets.DashboardView) fed frames by a publisher, plus a static
snapshot output beside it for renderers without widgets (snapshot.py).

    show_dashboard()      # what `%nbinfer dashboard` does: display the kernel's dashboard, start its publisher

There is one dashboard per kernel: showing it again adds another view of the same widget, so two
views never cost two publishers. It reads nothing but llm.stats(), follows load/unload, and frames
arrive at most every `interval` seconds. A frame is one stats snapshot sent as one message, so the
parts of the dashboard never disagree.
"""
from __future__ import annotations

import html

from . import remote_view, session
from .frame import STATE_COLOURS, ColourSlots, Frame, build_frame, human_bytes, percent
from .publisher import Publisher
from .remote_frame import RemoteFrame
from .snapshot import Snapshot
from .status import requests_table_html
from .widgets import DashboardView

WIDTH = 660
MAX_ROWS = 12                      # batch table rows shown; the rest are counted
MEMORY_COLOURS = {"weights": "#7f8c9d", "kv used": "#f28e2b", "kv cached": STATE_COLOURS["cached"],
                  "kv free": STATE_COLOURS["free"]}


class Dashboard:
    def __init__(self):
        self.frame: Frame | None = None
        self.colours = ColourSlots()
        self.view = DashboardView(width=WIDTH)
        self.snapshot = Snapshot()
        self.apply(None, [], [])

    def reset(self) -> None:
        """A model was loaded or unloaded: request colours start over."""
        self.colours = ColourSlots()

    def build(self, stats) -> Frame | RemoteFrame | None:
        if stats is None or isinstance(stats, RemoteFrame):      # a remote's frame comes whole
            return stats
        return build_frame(stats, self.colours)

    def apply(self, frame: Frame | None, prefill: list[float], decode: list[float], final: bool = False) -> None:
        """Show one frame: every trait that changed goes out in a single message (hold_sync), and
        nothing at all when nothing changed. `final`: a cell has ended, bring the snapshot up to date."""
        self.frame = frame
        state = frame_state(frame, self.colours)
        state["prefill"], state["decode"] = list(prefill), list(decode)
        view = self.view
        changed = {k: v for k, v in state.items() if getattr(view, k) != v}
        if changed:
            with view.hold_sync():
                for k, v in changed.items():
                    setattr(view, k, v)
                view.frame_id += 1
        self.snapshot.refresh(frame, now=final)

    def show(self) -> None:
        """Display a view of the widget and, after it, a snapshot output."""
        from IPython.display import display

        display(self.view.view_bundle(), raw=True)
        self.snapshot.show(self.frame)

    def close(self) -> None:
        self.view.close()


def frame_state(f: Frame | RemoteFrame | None, colours: ColourSlots) -> dict:
    """The widget's traits for a frame."""
    if isinstance(f, RemoteFrame):
        return {**remote_view.widget_state(f), "rates": _rates_html(f)}
    if f is None:
        return dict(header=_header(None), occupancy=0.0, occupancy_label="", codes=b"", used=b"", cached=b"",
                    blocks_total=0, grid_columns=0, owners={}, cell_owners={}, caption="no model loaded",
                    rates="", memory="", batch_title="Batch", table="")
    g = f.grid
    return dict(
        header=_header(f), occupancy=f.occupancy,
        occupancy_label=(f'<b class="nbinfer-occupancy">{percent(f.occupancy)}</b> <span class="nbinfer-dim">used · '
                         f'{f.blocks_used:,}/{f.blocks_total:,} blocks · {f.blocks_cached:,} cached</span>'),
        codes=g.codes, used=g.used, cached=g.cached, blocks_total=g.blocks_total, grid_columns=g.columns,
        owners={str(k): rid for rid, k in colours.slots.items()}, cell_owners=g.owners, caption=_caption(f),
        rates=_rates_html(f), memory=_memory_html(f), batch_title=_batch_title(f), table=_table_html(f))


def _header(f: Frame | None) -> str:
    if f is None:
        return ('<b>nbinfer</b> <span class="nbinfer-dim">· no model loaded (<code>%nbinfer load</code>)</span>')
    dot = "#f28e2b" if f.busy else "#59a14f"
    # the engine counts sequences (-n 2: two per request); the table below counts requests
    state = (f'{f.num_running} sequence{"s" * (f.num_running != 1)} running · {f.num_waiting} waiting'
             if f.busy else "idle")
    return (f'<b>nbinfer</b> <span class="nbinfer-dim">·</span> {html.escape(f.model)} <span class="nbinfer-dim">'
            f'· {html.escape(f.device)} · {html.escape(f.dtype)}</span><span class="nbinfer-state" style="float:right">'
            f'<span style="color:{dot}">●</span> {state}</span>')


def _caption(f: Frame) -> str:
    g = f.grid
    scale = (f" · 1 square ≈ {f.blocks_total / g.cells:,.0f} blocks, filled by its used and cached share"
             if not g.per_block else "")
    shared = f" ({f.blocks_shared:,} shared)" if f.blocks_shared else ""
    return (f"{f.blocks_total:,} blocks × {f.block_size} tokens · {f.blocks_used:,} used{shared} · "
            f"{f.blocks_cached:,} cached prefix · {f.blocks_free:,} free{scale} · hover a square for its owners")


def _rates_html(f: Frame | RemoteFrame) -> str:
    # a remote server may not report every total (None): "?" then, and no prefix-cache figure
    def n(v):
        return "?" if v is None else f"{v:,}"
    hits = (f' · {f.prefix_hit_tokens:,} prompt tokens from the prefix cache'
            if f.prefix_hit_tokens is not None else "")
    return (f'<span style="color:{DashboardView.prefill_colour.default_value}">■</span> prefill '
            f'<b class="nbinfer-prefill-rate">{f.prefill_tokens_per_s:,.0f}</b> tok/s &nbsp; '
            f'<span style="color:{DashboardView.decode_colour.default_value}">■</span> decode '
            f'<b class="nbinfer-decode-rate">{f.decode_tokens_per_s:,.0f}</b> tok/s'
            f'<div class="nbinfer-dim" style="margin-top:3px">{n(f.prompt_tokens_total)} prompt · '
            f'{n(f.generation_tokens_total)} generated{hits}</div>')


def _memory_html(f: Frame) -> str:
    parts = [("weights", f.weights_bytes), ("kv used", f.kv_used_bytes), ("kv cached", f.kv_cached_bytes),
             ("kv free", f.kv_free_bytes)]
    total = max(1, sum(b for _, b in parts))
    bar = "".join(f'<div title="{k}: {human_bytes(b)}" style="width:{100 * b / total:.2f}%;'
                  f'background:{MEMORY_COLOURS[k]}"></div>' for k, b in parts if b)
    legend = "".join(f'<div><span class="nbinfer-swatch" style="background:{MEMORY_COLOURS[k]}"></span>'
                     f'{k} <b>{human_bytes(b)}</b></div>' for k, b in parts)
    return (f'<div class="nbinfer-membar">{bar}</div><div class="nbinfer-legend">{legend}</div>'
            f'<div class="nbinfer-dim" style="margin-top:4px">{human_bytes(total)} in all: weights + a KV cache '
            f'of {f.blocks_total:,} blocks</div>')


def _batch_title(f: Frame) -> str:
    n = f.num_requests
    title = f'Batch · <span class="nbinfer-request-count">{n}</span> request{"s" * (n != 1)}'
    if f.sequences_differ:
        title += (' <span style="text-transform:none;letter-spacing:0;font-weight:400">(n = samples per '
                  'request; each runs as one sequence)</span>')
    return title


def _table_html(f: Frame) -> str:
    if not f.rows:
        return '<div class="nbinfer-dim">no requests in flight</div>'
    more = len(f.rows) - MAX_ROWS
    extra = f'<div class="nbinfer-dim">… and {more} more</div>' if more > 0 else ""
    return requests_table_html(f, f.rows[:MAX_ROWS]) + extra


# -- the kernel's dashboard -------------------------------------------------------------------------

_dashboard: Dashboard | None = None
_publisher: Publisher | None = None


def get_dashboard(interval: float = 0.1) -> tuple[Dashboard, Publisher]:
    global _dashboard, _publisher
    if _dashboard is None:
        _dashboard = Dashboard()
        _publisher = Publisher(_dashboard, interval)
        session.add_listener(_publisher.on_engine_change)
        _cell_events(_publisher, register=True)
    _publisher.interval = interval
    _publisher.start()
    return _dashboard, _publisher


def show_dashboard(interval: float = 0.1) -> Dashboard:
    dashboard, publisher = get_dashboard(interval)
    publisher.tick()                    # the first view opens with a current frame
    dashboard.show()
    return dashboard


def close_dashboard() -> None:
    """Stop the publisher and close the widget (the extension's unload calls this)."""
    global _dashboard, _publisher
    if _publisher is not None:
        _publisher.stop()
        session.remove_listener(_publisher.on_engine_change)
        _cell_events(_publisher, register=False)
    if _dashboard is not None:
        _dashboard.close()
    _dashboard = _publisher = None


def _cell_events(publisher: Publisher, register: bool) -> None:
    """A frame at the end of every cell, snapshot included: "Run All" then save keeps the last frame,
    and so does a notebook run headless (nbclient reads a cell's messages only while it runs)."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return
    if register:
        shell.events.register("post_run_cell", publisher.on_cell_end)
    elif publisher.on_cell_end in shell.events.callbacks["post_run_cell"]:
        shell.events.unregister("post_run_cell", publisher.on_cell_end)
