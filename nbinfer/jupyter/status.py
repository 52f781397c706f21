"""Static views of the engine: `%nbinfer status`, and the dashboard's fallback where widgets can't render
(GitHub, nbconvert without widget state, plain IPython). Plain HTML and text, no JavaScript."""
from __future__ import annotations

import html

import numpy as np

from .frame import (CACHED, FIRST_REQUEST, FREE, REQUEST_COLOURS, SHARED, STATE_COLOURS, ColourSlots,
                    Frame, build_frame, human_bytes)


class StatusView:
    """Displays as an HTML summary (optionally with an SVG block map) and as text."""

    def __init__(self, stats, with_block_map: bool = False, frame: Frame | None = None):
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


def status_text(f: Frame | None) -> str:
    if f is None:
        return "nbinfer: no model is loaded"
    lines = [
        f"model      {f.model} · {f.device} · {f.dtype}",
        f"KV cache   {f.occupancy:.0%} used · {f.blocks_used} used / {f.blocks_cached} cached / "
        f"{f.blocks_free} free of {f.blocks_total} blocks × {f.block_size} tokens"
        + (f" · {f.blocks_shared} shared" if f.blocks_shared else ""),
        f"requests   {f.num_running} running · {f.num_waiting} waiting · {f.num_preempted_total} preempted so far",
        f"tokens/s   prefill {f.prefill_tokens_per_s:,.0f} · decode {f.decode_tokens_per_s:,.0f}",
        f"totals     {f.prompt_tokens_total:,} prompt · {f.generation_tokens_total:,} generated · "
        f"{f.prefix_hit_tokens:,} from the prefix cache",
        f"memory     weights {human_bytes(f.weights_bytes)} · KV {human_bytes(f.kv_cache_bytes)} "
        f"({human_bytes(f.kv_used_bytes)} used, {human_bytes(f.kv_cached_bytes)} cached, "
        f"{human_bytes(f.kv_free_bytes)} free)",
    ]
    for r in f.rows:
        lines.append(f"  {r.request_id:<14} {r.state:<9} prompt {r.prompt_tokens:>5} · output "
                     f"{r.output_tokens:>5}/{r.max_tokens:<5} · {r.blocks} blocks")
    return "\n".join(lines)


def status_html(f: Frame | None, with_block_map: bool = False) -> str:
    if f is None:
        return '<div style="font-family:sans-serif;color:#888">nbinfer: no model is loaded</div>'
    e = html.escape
    parts = ['<div style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:13px;'
             'max-width:760px">',
             f'<div style="font-weight:600">{e(f.model)} <span style="color:#888;font-weight:400">'
             f'· {e(f.device)} · {e(f.dtype)}</span></div>',
             f'<div>KV cache <b>{f.occupancy:.0%}</b> used · {f.blocks_used} used / {f.blocks_cached} cached / '
             f'{f.blocks_free} free of {f.blocks_total} blocks × {f.block_size} tokens</div>']
    if with_block_map:
        parts.append(block_map_svg(f))
    parts.append(f'<div>{f.num_running} running · {f.num_waiting} waiting · prefill '
                 f'{f.prefill_tokens_per_s:,.0f} tok/s · decode {f.decode_tokens_per_s:,.0f} tok/s</div>')
    parts.append(f'<div>memory: weights {human_bytes(f.weights_bytes)} · KV {human_bytes(f.kv_cache_bytes)} '
                 f'({human_bytes(f.kv_used_bytes)} used, {human_bytes(f.kv_free_bytes)} free)</div>')
    parts.append(requests_table_html(f))
    parts.append("</div>")
    return "".join(parts)


def requests_table_html(f: Frame) -> str:
    if not f.rows:
        return '<div style="color:#888;margin-top:4px">no requests in flight</div>'
    head = "".join(f'<th style="text-align:{a};padding:2px 8px;font-weight:600">{h}</th>'
                   for h, a in (("request", "left"), ("state", "left"), ("prompt", "right"),
                                ("output", "right"), ("progress", "left"), ("blocks", "right")))
    body = []
    for r in f.rows:
        bar = (f'<div style="width:90px;height:8px;background:#e6e8eb;border-radius:4px;overflow:hidden">'
               f'<div style="width:{r.progress * 100:.0f}%;height:100%;background:{r.colour}"></div></div>')
        body.append(
            "<tr>"
            f'<td style="padding:2px 8px"><span style="display:inline-block;width:9px;height:9px;'
            f'border-radius:2px;background:{r.colour};margin-right:6px"></span>{html.escape(r.request_id)}</td>'
            f'<td style="padding:2px 8px">{r.state}</td>'
            f'<td style="padding:2px 8px;text-align:right">{r.prompt_tokens}</td>'
            f'<td style="padding:2px 8px;text-align:right">{r.output_tokens}/{r.max_tokens}</td>'
            f'<td style="padding:2px 8px">{bar}</td>'
            f'<td style="padding:2px 8px;text-align:right">{r.blocks}</td>'
            "</tr>")
    return (f'<table style="border-collapse:collapse;font-size:12px;margin-top:4px">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')


def block_map_svg(f: Frame, width: int = 560) -> str:
    """The block map as inline SVG: runs of equal cells in a row become one rectangle."""
    cells = np.frombuffer(f.blocks, dtype=np.uint8)
    n = len(cells)
    cols = max(1, min(64, int(np.ceil(np.sqrt(n * 4)))))
    size = max(3, width // cols)
    rows = -(-n // cols)
    rects = []
    for row in range(rows):
        line = cells[row * cols:(row + 1) * cols]
        start = 0
        for i in range(1, len(line) + 1):
            if i == len(line) or line[i] != line[start]:
                rects.append(f'<rect x="{start * size}" y="{row * size}" width="{(i - start) * size - 1}" '
                             f'height="{size - 1}" fill="{_colour(int(line[start]))}"/>')
                start = i
    legend = " ".join(
        f'<span style="display:inline-block;width:9px;height:9px;background:{c};margin:0 3px 0 8px"></span>{t}'
        for t, c in (("free", STATE_COLOURS["free"]), ("cached prefix", STATE_COLOURS["cached"]),
                     ("shared", STATE_COLOURS["shared"]), ("used (colour = request)", REQUEST_COLOURS[0])))
    scale = f" (1 cell = {f.blocks_per_cell} blocks)" if f.blocks_per_cell > 1 else ""
    return (f'<svg width="{cols * size}" height="{rows * size}" style="display:block;margin:6px 0">'
            + "".join(rects) + f'</svg><div style="font-size:11px;color:#666">{legend}{scale}</div>')


def _colour(code: int) -> str:
    if code == FREE:
        return STATE_COLOURS["free"]
    if code == CACHED:
        return STATE_COLOURS["cached"]
    if code == SHARED:
        return STATE_COLOURS["shared"]
    return REQUEST_COLOURS[(code - FIRST_REQUEST) % len(REQUEST_COLOURS)]
