"""Plain-text tables for `nbinfer bench` (and the README)."""
from __future__ import annotations

from .metrics import Summary


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


def table(rows: list[Summary]) -> str:
    head = ("system", "out tok/s", "total tok/s", "TTFT p50/p90 ms", "ITL p50/p90 ms", "E2E p50/p90 s",
            "peak mem", "prefix hit")
    lines = [head]
    for s in rows:
        lines.append((
            s.system, f"{s.output_tps:,.1f}", f"{s.total_tps:,.1f}",
            f"{s.ttft_p50 * 1e3:,.0f} / {s.ttft_p90 * 1e3:,.0f}",
            f"{s.itl_p50 * 1e3:,.1f} / {s.itl_p90 * 1e3:,.1f}",
            f"{s.e2e_p50:,.2f} / {s.e2e_p90:,.2f}",
            _gib(s.peak_mem_bytes),
            "-" if s.prefix_hit_rate is None else f"{s.prefix_hit_rate:.0%}"))
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    out = []
    for j, r in enumerate(lines):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if j == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def roofline_table(probes, bandwidth: float) -> str:
    lines = [f"measured device-to-device copy bandwidth: {bandwidth / 1e12:.2f} TB/s (read + write)",
             "| batch | context | step ms | bytes/step | roofline ms | achieved |",
             "|-------|---------|---------|------------|-------------|----------|"]
    for p in probes:
        lines.append(f"| {p.batch} | {p.context} | {p.step_s * 1e3:.2f} | {p.bytes_per_step / 1e9:.2f} GB | "
                     f"{p.roofline_s * 1e3:.2f} | {p.fraction:.0%} |")
    return "\n".join(lines)
