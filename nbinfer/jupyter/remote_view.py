"""How a RemoteFrame looks: the live dashboard's traits (no block map: the widget draws none for
zero blocks), and the static HTML / text that `%nbinfer status` and the snapshot show."""
from __future__ import annotations

import html

from .frame import percent
from .remote_frame import RemoteFrame


def _count(v: int | None) -> str:
    return "?" if v is None else f"{v:,}"


def _usage(f: RemoteFrame) -> str:
    if f.problem:
        return f"no figures: {f.problem}"
    if f.kv_usage is None:
        return "usage not reported"
    capacity = f" of {f.kv_capacity}" if f.kv_capacity else ""
    return f"{percent(f.kv_usage)} used{capacity}"


def _requests(f: RemoteFrame) -> str:
    return f"{f.num_running} running · {f.num_waiting} waiting"


def _totals(f: RemoteFrame) -> str:
    hits = f" · {f.prefix_hit_tokens:,} from the prefix cache" if f.prefix_hit_tokens is not None else ""
    return f"{_count(f.prompt_tokens_total)} prompt · {_count(f.generation_tokens_total)} generated{hits}"


def _not_shown(f: RemoteFrame) -> str:
    return "not shown for a remote server: " + "; ".join(f.not_shown())


def widget_state(f: RemoteFrame) -> dict:
    """The dashboard widget's traits for a remote frame, but its rates (dashboard.frame_state adds
    those, drawn as for the local engine)."""
    e = html.escape
    dot = "#f28e2b" if f.busy else "#59a14f"
    state = _requests(f) if f.busy else "idle"
    header = (f'<b>nbinfer</b> <span class="nbinfer-dim">· remote</span> {e(f.model)} <span class="nbinfer-dim">'
              f'· {e(f.title)}</span><span class="nbinfer-state" style="float:right">'
              f'<span style="color:{dot}">●</span> {state}</span>')
    label = (f'<b class="nbinfer-occupancy">{percent(f.kv_usage)}</b> <span class="nbinfer-dim">used'
             f'{" of " + e(f.kv_capacity) if f.kv_capacity else ""} · from its /metrics</span>'
             if f.kv_usage is not None and not f.problem else f'<span class="nbinfer-dim">{e(_usage(f))}</span>')
    return dict(
        header=header, occupancy=f.occupancy, occupancy_label=label, codes=b"", used=b"", cached=b"",
        blocks_total=0, grid_columns=0, owners={}, cell_owners={},
        caption="no block map: a remote server's KV blocks are not visible over HTTP, only the usage above",
        memory='<div class="nbinfer-dim nbinfer-remote-memory">not reported by a remote server</div>',
        batch_title=f'Batch · <span class="nbinfer-request-count">{f.num_running + f.num_waiting}</span> requests '
                    f'<span style="text-transform:none;letter-spacing:0;font-weight:400">({_requests(f)})</span>',
        table=f'<div class="nbinfer-dim nbinfer-remote-note">{e(_not_shown(f))}</div>')


def status_text(f: RemoteFrame) -> str:
    lines = [f"remote     {f.model} · {f.title} ({f.api} API)",
             f"KV cache   {_usage(f)}",
             f"requests   {_requests(f)}" + (f" · {f.num_preempted_total:,} preempted so far"
                                             if f.num_preempted_total is not None else ""),
             f"tokens/s   prefill {f.prefill_tokens_per_s:,.0f} · decode {f.decode_tokens_per_s:,.0f}",
             f"totals     {_totals(f)}",
             _not_shown(f)]
    return "\n".join(lines)


def status_html(f: RemoteFrame) -> str:
    e = html.escape
    rows = status_text(f).splitlines()
    return ('<div style="font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:13px;max-width:760px">'
            f'<div style="font-weight:600">{e(f.model)} <span style="color:#888;font-weight:400">· remote · '
            f'{e(f.title)} ({e(f.api)} API)</span></div>'
            + "".join(f"<div>{e(r)}</div>" for r in rows[1:-1])
            + f'<div style="color:#888">{e(rows[-1])}</div></div>')
