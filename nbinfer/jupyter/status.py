"""Static views of the engine (or of a connected remote server): `%nbinfer status`, and the
dashboard's fallback where widgets can't render (GitHub, nbconvert without widget state, plain
IPython). Plain HTML and text, no JavaScript."""
from __future__ import annotations

import html

import numpy as np

from . import remote_view
from .block_grid import CACHED, FIRST_REQUEST, FREE, SHARED
from .frame import REQUEST_COLOURS, STATE_COLOURS, ColourSlots, Frame, build_frame, human_bytes, percent
from .remote_frame import RemoteFrame


class StatusView:
    """Displays as an HTML summary (optionally with an SVG block map) and as text."""

    def __init__(self, stats, with_block_map: bool = False, frame: Frame | None = None):
        if isinstance(stats, RemoteFrame):
            frame = stats
        self.frame = frame if frame is not None or stats is None else build_frame(stats, ColourSlots())
        self.with_block_map = with_block_map
        self.engine_error = getattr(stats, "engine_error", None)     # the engine thread died of it

    def __repr__(self) -> str:
        dead = f"engine     DEAD: {self.engine_error}\n" if self.engine_error else ""
        return dead + status_text(self.frame)

    def _repr_html_(self) -> str:
        dead = (f'<div style="color:#b00020;font-weight:600">engine dead: {html.escape(self.engine_error)}</div>'
                if self.engine_error else "")
        return dead + status_html(self.frame, self.with_block_map)


def status_text(f: Frame | RemoteFrame | None) -> str:
    if f is None:
        return "nbinfer: no model is loaded"
    if isinstance(f, RemoteFrame):
        return remote_view.status_text(f)
    lines = [
        f"model      {f.model} · {f.device} · {f.dtype}",
        f"KV cache   {percent(f.occupancy)} used · {f.blocks_used} used / {f.blocks_cached} cached / "
        f"{f.blocks_free} free of {f.blocks_total} blocks × {f.block_size} tokens"
        + (f" · {f.blocks_shared} shared" if f.blocks_shared else ""),
        f"sequences  {f.num_running} running · {f.num_waiting} waiting · {_requests(f)} · "
        f"{f.num_preempted_total} preempted so far",
        f"tokens/s   prefill {f.prefill_tokens_per_s:,.0f} · decode {f.decode_tokens_per_s:,.0f}",
        f"totals     {f.prompt_tokens_total:,} prompt · {f.generation_tokens_total:,} generated · "
        f"{f.prefix_hit_tokens:,} from the prefix cache",
        f"memory     weights {human_bytes(f.weights_bytes)} · KV {human_bytes(f.kv_cache_bytes)} "
        f"({human_bytes(f.kv_used_bytes)} used, {human_bytes(f.kv_cached_bytes)} cached, "
        f"{human_bytes(f.kv_free_bytes)} free)",
    ]
    for r in f.rows:
        samples = f" · n={r.n}" if r.n > 1 else ""
        origin = f" · from {r.origin}" if r.origin != "api" else ""
        lines.append(f"  {r.request_id:<14} {r.state:<9} prompt {r.prompt_tokens:>5} · output "
                     f"{r.output_tokens:>5}/{r.max_tokens:<5} · {r.blocks} blocks{samples}{origin}")
    return "\n".join(lines)


def sequences_line(f: Frame) -> str:
    """The engine counts sequences, the batch table requests: with -n 2, 8 requests run 16 sequences,
    so both are named wherever both appear."""
    return (f"{f.num_running} sequence{'s' * (f.num_running != 1)} running · {f.num_waiting} waiting · "
            f"{_requests(f)}")


def _requests(f: Frame) -> str:
    return f"{f.num_requests} request{'s' * (f.num_requests != 1)}"


def status_html(f: Frame | RemoteFrame | None, with_block_map: bool = False) -> str:
    if f is None:
        return '<div style="font-family:sans-serif;color:#888">nbinfer: no model is loaded</div>'
    if isinstance(f, RemoteFrame):
        return remote_view.status_html(f)
    e = html.escape
    parts = ['<div style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:13px;'
             'max-width:760px">',
             f'<div style="font-weight:600">{e(f.model)} <span style="color:#888;font-weight:400">'
             f'· {e(f.device)} · {e(f.dtype)}</span></div>',
             f'<div>KV cache <b>{percent(f.occupancy)}</b> used · {f.blocks_used} used / {f.blocks_cached} cached / '
             f'{f.blocks_free} free of {f.blocks_total} blocks × {f.block_size} tokens</div>']
    if with_block_map:
        parts.append(block_map_svg(f))
    parts.append(f'<div>{sequences_line(f)} · prefill '
                 f'{f.prefill_tokens_per_s:,.0f} tok/s · decode {f.decode_tokens_per_s:,.0f} tok/s</div>')
    parts.append(f'<div>memory: weights {human_bytes(f.weights_bytes)} · KV {human_bytes(f.kv_cache_bytes)} '
                 f'({human_bytes(f.kv_used_bytes)} used, {human_bytes(f.kv_free_bytes)} free)</div>')
    parts.append(requests_table_html(f))
    parts.append("</div>")
    return "".join(parts)


def requests_table_html(f: Frame, rows=None) -> str:
    """One row per request (`rows`: a slice of f.rows); an n column where some request has n > 1."""
    rows = f.rows if rows is None else rows
    if not rows:
        return '<div style="color:#888;margin-top:4px">no requests in flight</div>'
    columns = [("request", "left"), ("state", "left"), ("prompt", "right"), ("output", "right"),
               ("progress", "left"), ("blocks", "right")]
    if f.sequences_differ:
        columns.insert(2, ("n", "right"))
    head = "".join(f'<th style="text-align:{a};padding:2px 8px;font-weight:600">{h}</th>' for h, a in columns)
    cell = '<td style="padding:2px 8px">{}</td>'
    right = '<td style="padding:2px 8px;text-align:right">{}</td>'
    body = []
    for r in rows:
        bar = (f'<div style="width:90px;height:8px;background:#e6e8eb;border-radius:4px;overflow:hidden">'
               f'<div style="width:{r.progress * 100:.0f}%;height:100%;background:{r.colour}"></div></div>')
        name = (f'<span style="display:inline-block;width:9px;height:9px;border-radius:2px;background:{r.colour};'
                f'margin-right:6px"></span>{html.escape(r.request_id)}{_origin_tag(r.origin)}')
        tds = [cell.format(name), cell.format(r.state), right.format(r.prompt_tokens),
               right.format(f"{r.output_tokens}/{r.max_tokens}"), cell.format(bar), right.format(r.blocks)]
        if f.sequences_differ:
            tds.insert(2, right.format(r.n))
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (f'<table class="nbinfer-requests" style="border-collapse:collapse;font-size:12px;margin-top:4px">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def _origin_tag(origin: str) -> str:
    """A request the notebook did not send (`%nbinfer serve`'s HTTP clients: "server") says so."""
    if origin == "api":
        return ""
    return (f' <span class="nbinfer-origin" style="font-size:10px;padding:0 4px;border-radius:3px;'
            f'background:rgba(127,127,127,.18)">{html.escape(origin)}</span>')


def block_map_svg(f: Frame, width: int = 560) -> str:
    """The block map as inline SVG, drawn as the canvas draws it (see block_grid.py): a cell's used
    share fills it from the bottom, its cached share above that. Runs of equal cells in a row share
    their rectangles."""
    g = f.grid
    codes = np.frombuffer(g.codes, dtype=np.uint8)
    used, cached = g.used_counts(), g.cached_counts()
    n = len(codes)
    cols = g.columns or max(1, min(64, int(np.ceil(np.sqrt(n * 4)))))
    size = max(3, width // cols)
    inner = size - 1
    rows = -(-n // cols)
    rects = []
    for row in range(rows):
        lo, hi = row * cols, min(n, (row + 1) * cols)
        start = lo
        for i in range(lo + 1, hi + 1):
            if i < hi and (codes[i], used[i], cached[i]) == (codes[start], used[start], cached[start]):
                continue
            span = g.block_range(start)
            blocks = span[1] - span[0]
            x, y, w = (start - lo) * size, row * size, (i - start) * size - 1
            used_h = fill_height(int(used[start]), blocks, inner)
            cached_h = min(inner - used_h, fill_height(int(cached[start]), blocks, inner))
            for colour, top, h in ((STATE_COLOURS["free"], 0, inner - used_h - cached_h),
                                   (STATE_COLOURS["cached"], inner - used_h - cached_h, cached_h),
                                   (_colour(int(codes[start])), inner - used_h, used_h)):
                if h > 0:
                    rects.append(f'<rect x="{x}" y="{y + top:g}" width="{w}" height="{h:g}" fill="{colour}"/>')
            start = i
    legend = " ".join(
        f'<span style="display:inline-block;width:9px;height:9px;background:{c};margin:0 3px 0 8px"></span>{t}'
        for t, c in (("free", STATE_COLOURS["free"]), ("cached prefix", STATE_COLOURS["cached"]),
                     ("shared", STATE_COLOURS["shared"]), ("used (colour = request)", REQUEST_COLOURS[0])))
    scale = (f" · 1 square = {g.blocks_total / g.cells:,.0f} blocks, filled by its used and cached share"
             if not g.per_block else "")
    return (f'<svg width="{cols * size}" height="{rows * size}" style="display:block;margin:6px 0">'
            + "".join(rects) + f'</svg><div style="font-size:11px;color:#666">{legend}{scale}</div>')


def fill_height(count: int, blocks: int, inner: float) -> float:
    """Height of a share of a cell: any use shows (at least 2 px), and a cell that is not full never
    looks full (at most inner - 1 px). block_map.js draws with the same rule."""
    if count <= 0 or blocks <= 0:
        return 0.0
    if count >= blocks:
        return float(inner)
    return float(min(inner - 1, max(2.0, round(inner * count / blocks, 1))))


def _colour(code: int) -> str:
    if code == FREE:
        return STATE_COLOURS["free"]
    if code == CACHED:
        return STATE_COLOURS["cached"]
    if code == SHARED:
        return STATE_COLOURS["shared"]
    return REQUEST_COLOURS[(code - FIRST_REQUEST) % len(REQUEST_COLOURS)]
