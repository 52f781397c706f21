"""Plain-text tables for `nbinfer bench` (and the README)."""
from __future__ import annotations

import math

from .metrics import Summary


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def _grid(lines: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
    out = []
    for j, r in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if j == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def _num(x: float, fmt: str) -> str:
    return "-" if x is None or math.isnan(x) else format(x, fmt)


def table(rows: list[Summary]) -> str:
    head = ("system", "dtype", "load s", "out tok/s", "total tok/s", "TTFT p50/p90 ms", "decode tok/s",
            "ITL p50/p90 ms", "E2E p50/p90 s", "peak mem", "prefix hit", "same tokens")
    lines = [head]
    for s in rows:
        lines.append((
            s.system, s.dtype or "-", _num(s.load_s, ".1f"), f"{s.output_tps:,.1f}", f"{s.total_tps:,.1f}",
            f"{s.ttft_p50 * 1e3:,.0f} / {s.ttft_p90 * 1e3:,.0f}", _num(s.decode_tps, ",.1f"),
            f"{s.itl_p50 * 1e3:,.1f} / {s.itl_p90 * 1e3:,.1f}",
            f"{s.e2e_p50:,.2f} / {s.e2e_p90:,.2f}",
            _gib(s.peak_mem_bytes),
            "-" if s.prefix_hit_rate is None else f"{s.prefix_hit_rate:.0%}",
            "-" if s.match is None else f"{s.match:.0%}"))
    return _grid(lines)


def ratios(ours: Summary, peer: Summary) -> dict[str, float]:
    """How many times nbinfer is ahead of a peer (>1: nbinfer better) on each headline metric."""
    def div(a, b):
        return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")
    return {"out_tps": div(ours.output_tps, peer.output_tps), "decode_tps": div(ours.decode_tps, peer.decode_tps),
            "ttft": div(peer.ttft_p50, ours.ttft_p50)}


def ratio_table(ours: Summary, peers: list[Summary]) -> str:
    lines = [("nbinfer vs (x, >1: nbinfer ahead)", "out tok/s", "decode tok/s", "TTFT p50")]
    for p in peers:
        r = ratios(ours, p)
        lines.append((f"{p.system} ({p.dtype})", *(_num(r[k], ".2f") + "x" for k in ("out_tps", "decode_tps", "ttft"))))
    return _grid(lines)


def roofline_table(probes, bandwidth: float) -> str:
    lines = [f"measured device-to-device copy bandwidth: {bandwidth / 1e12:.2f} TB/s (read + write)",
             "| batch | context | step ms | bytes/step | roofline ms | achieved |",
             "|-------|---------|---------|------------|-------------|----------|"]
    for p in probes:
        lines.append(f"| {p.batch} | {p.context} | {p.step_s * 1e3:.2f} | {p.bytes_per_step / 1e9:.2f} GB | "
                     f"{p.roofline_s * 1e3:.2f} | {p.fraction:.0%} |")
    return "\n".join(lines)
