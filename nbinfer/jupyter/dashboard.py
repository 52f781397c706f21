"""The live dashboard: anywidget canvases (block map, throughput) + plain ipywidgets, fed by a publisher.

    show_dashboard()      # what `%nbinfer dashboard` does: display the kernel's dashboard, start its publisher

There is one dashboard per kernel: showing it again adds another view of the same widgets, so two
views never cost two publishers. It reads nothing but llm.stats(), follows load/unload, and frames
arrive at most every `interval` seconds, each as one hold_sync message per widget that changed.
"""
from __future__ import annotations

import contextlib
import html

import ipywidgets as W

from . import session
from .frame import STATE_COLOURS, ColourSlots, Frame, build_frame, human_bytes
from .publisher import Publisher
from .status import requests_table_html, status_html, status_text
from .widgets import BlockMap, Sparkline

WIDTH = 660
MAX_ROWS = 12                      # batch table rows shown; the rest are counted
MEMORY_COLOURS = {"weights": "#7f8c9d", "kv used": "#f28e2b", "kv cached": STATE_COLOURS["cached"],
                  "kv free": STATE_COLOURS["free"]}


class DashboardBox(W.VBox):
    """The dashboard's root widget. Besides the widget view it carries a static HTML snapshot and a
    text summary, which renderers without a kernel or widget support (GitHub, nbconvert) show."""

    def __init__(self, dashboard: "Dashboard", **kwargs):
        super().__init__(**kwargs)
        self._dashboard = dashboard

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        frame = self._dashboard.frame
        if isinstance(bundle, tuple):
            data, meta = bundle
        else:
            data, meta = bundle, {}
        data = dict(data)
        data["text/plain"] = status_text(frame)
        data["text/html"] = status_html(frame, with_block_map=True)
        return data, meta


class Dashboard:
    def __init__(self):
        self.frame: Frame | None = None
        self.colours = ColourSlots()
        box = dict(layout=W.Layout(margin="0 0 8px 0"))
        self.header = W.HTML(**box)
        self.occupancy = W.FloatProgress(value=0.0, min=0.0, max=1.0, bar_style="",
                                         layout=W.Layout(width="330px", height="14px"),
                                         style={"bar_color": "#f28e2b"})
        self.occupancy_label = W.HTML(layout=W.Layout(margin="0 0 0 10px", width=f"{WIDTH - 340}px"))
        self.block_map = BlockMap(width=WIDTH)
        self.sparkline = Sparkline(width=300, height=64)
        self.rates = W.HTML()
        self.memory = W.HTML(layout=W.Layout(width="320px"))
        self.table = W.HTML()
        self.widgets = [self.header, self.occupancy, self.occupancy_label, self.block_map, self.sparkline,
                        self.rates, self.memory, self.table]
        section = lambda title: W.HTML(f'<div class="nbinfer-section">{title}</div>')  # noqa: E731
        self.root = DashboardBox(self, children=[
            self.header,
            section("KV cache"),
            W.HBox([self.occupancy, self.occupancy_label], layout=W.Layout(align_items="center")),
            self.block_map,
            W.HBox([
                W.VBox([section("Throughput · last minute"), self.sparkline, self.rates],
                       layout=W.Layout(width="330px")),
                W.VBox([section("Memory"), self.memory], layout=W.Layout(width="330px")),
            ]),
            section("Batch"),
            self.table,
            W.HTML(_STYLE),
        ], layout=W.Layout(padding="10px 14px", border="1px solid rgba(127,127,127,.3)", width=f"{WIDTH + 30}px"))
        self.root.add_class("nbinfer-dashboard")
        self.apply(None, [], [])

    def reset(self) -> None:
        """A model was loaded or unloaded: request colours start over."""
        self.colours = ColourSlots()

    def build(self, stats) -> Frame | None:
        return None if stats is None else build_frame(stats, self.colours)

    def apply(self, frame: Frame | None, prefill: list[float], decode: list[float]) -> None:
        """Push one frame: every widget's changes go out as a single message (hold_sync)."""
        self.frame = frame
        with contextlib.ExitStack() as stack:
            for w in self.widgets:
                stack.enter_context(w.hold_sync())
            self.sparkline.prefill, self.sparkline.decode = prefill, decode
            if frame is None:
                self.header.value = _header(None)
                self.occupancy.value = 0.0
                self.occupancy_label.value = ""
                self.block_map.blocks, self.block_map.owners = b"", {}
                self.block_map.caption = "no model loaded"
                self.rates.value = self.memory.value = self.table.value = ""
                return
            self.header.value = _header(frame)
            self.occupancy.value = frame.occupancy
            self.occupancy_label.value = (
                f'<span class="nbinfer-occupancy-label"><b class="nbinfer-occupancy">{frame.occupancy:.0%}</b> '
                f'<span class="nbinfer-dim">used · {frame.blocks_used}/{frame.blocks_total} blocks · '
                f'{frame.blocks_cached} cached</span></span>')
            self.block_map.blocks = frame.blocks
            self.block_map.blocks_per_cell = frame.blocks_per_cell
            self.block_map.owners = {str(k): rid for rid, k in self.colours.slots.items()}
            self.block_map.caption = _caption(frame)
            self.rates.value = (
                f'<span style="color:{self.sparkline.prefill_colour}">■</span> prefill '
                f'<b>{frame.prefill_tokens_per_s:,.0f}</b> tok/s &nbsp; '
                f'<span style="color:{self.sparkline.decode_colour}">■</span> decode '
                f'<b>{frame.decode_tokens_per_s:,.0f}</b> tok/s'
                f'<div class="nbinfer-dim" style="margin-top:3px">{frame.prompt_tokens_total:,} prompt · '
                f'{frame.generation_tokens_total:,} generated · {frame.prefix_hit_tokens:,} prompt tokens '
                f'from the prefix cache</div>')
            self.memory.value = _memory_html(frame)
            self.table.value = _table_html(frame)


def _header(f: Frame | None) -> str:
    if f is None:
        return ('<div class="nbinfer-header"><b>nbinfer</b> <span class="nbinfer-dim">· no model loaded '
                '(<code>%nbinfer load</code>)</span></div>')
    dot = "#f28e2b" if f.busy else "#59a14f"
    state = (f"{f.num_running} running · {f.num_waiting} waiting" if f.busy else "idle")
    return (f'<div class="nbinfer-header"><b>nbinfer</b> <span class="nbinfer-dim">·</span> '
            f'{html.escape(f.model)} <span class="nbinfer-dim">· {html.escape(f.device)} · '
            f'{html.escape(f.dtype)}</span><span style="float:right"><span style="color:{dot}">●</span> '
            f'{state}</span></div>')


def _caption(f: Frame) -> str:
    scale = f" · 1 square = {f.blocks_per_cell} blocks" if f.blocks_per_cell > 1 else ""
    shared = f" · {f.blocks_shared} shared" if f.blocks_shared else ""
    return (f"{f.blocks_total} blocks × {f.block_size} tokens · {f.blocks_used} used · "
            f"{f.blocks_cached} cached prefix{shared} · {f.blocks_free} free{scale} · hover a square for its owner")


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
            f'of {f.blocks_total} blocks</div>')


def _table_html(f: Frame) -> str:
    if not f.rows:
        return '<div class="nbinfer-dim">no requests in flight</div>'
    shown = Frame(**{**f.__dict__, "rows": f.rows[:MAX_ROWS]})
    more = len(f.rows) - MAX_ROWS
    extra = f'<div class="nbinfer-dim">… and {more} more</div>' if more > 0 else ""
    return requests_table_html(shown) + extra


_STYLE = """<style>
.nbinfer-dashboard { font-family: var(--jp-ui-font-family, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif);
                     font-size: 13px; border-radius: 6px; }
.nbinfer-dashboard .nbinfer-header { font-size: 14px; }
.nbinfer-dashboard .nbinfer-section { font-size: 11px; font-weight: 600; letter-spacing: .06em;
                                      text-transform: uppercase; opacity: .6; margin: 6px 0 3px; }
.nbinfer-dashboard .nbinfer-dim { opacity: .65; }
.nbinfer-dashboard .nbinfer-membar { display: flex; height: 14px; border-radius: 3px; overflow: hidden;
                                     width: 300px; margin: 6px 0 6px; }
.nbinfer-dashboard .nbinfer-legend { display: grid; grid-template-columns: 1fr 1fr; gap: 1px 10px; font-size: 12px; }
.nbinfer-dashboard .nbinfer-swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px;
                                     margin-right: 5px; }
.nbinfer-dashboard .widget-html-content { line-height: 1.45; }
.nbinfer-dashboard .nbinfer-occupancy-label { white-space: nowrap; }
</style>"""


# -- the kernel's dashboard -------------------------------------------------------------------------

_dashboard: Dashboard | None = None
_publisher: Publisher | None = None


def get_dashboard(interval: float = 0.1) -> tuple[Dashboard, Publisher]:
    global _dashboard, _publisher
    if _dashboard is None:
        _dashboard = Dashboard()
        _publisher = Publisher(_dashboard, interval)
        session.add_listener(_publisher.on_engine_change)
    _publisher.interval = interval
    _publisher.start()
    return _dashboard, _publisher


def show_dashboard(interval: float = 0.1) -> Dashboard:
    from IPython.display import display

    dashboard, publisher = get_dashboard(interval)
    publisher.tick()                    # the first view opens with a current frame
    display(dashboard.root)
    return dashboard


def close_dashboard() -> None:
    """Stop the publisher and close the widgets (the extension's unload calls this)."""
    global _dashboard, _publisher
    if _publisher is not None:
        _publisher.stop()
        session.remove_listener(_publisher.on_engine_change)
    if _dashboard is not None:
        _close_tree(_dashboard.root)
    _dashboard = _publisher = None


def _close_tree(widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()
