"""`%nbinfer bench`: the `nbinfer bench` run from a notebook, with its table and a chart.

Imported by the Jupyter extension (nbinfer.jupyter.commands.PLUGINS); takes the CLI's flags.
"""
from __future__ import annotations

import io

from IPython.core.error import UsageError

from nbinfer.jupyter import session
from nbinfer.jupyter.commands import subcommand

from .cli import add_arguments


@subcommand("bench", "benchmark nbinfer beside HF generate, vLLM or llama.cpp (same flags as `nbinfer bench`)",
            add_arguments)
def bench(args, shell):
    from IPython.display import display

    from .cli import run_bench

    loaded = session.current_llm()
    if loaded is not None and str(loaded.engine.device).startswith("cuda"):
        raise UsageError("%nbinfer bench: the notebook's model holds the GPU; `%nbinfer unload` it first "
                         "(the benchmark loads its own engine and HF's model)")
    if args.reps < 1:
        raise UsageError("%nbinfer bench: --reps must be >= 1")
    options = {k: v for k, v in vars(args).items() if k not in ("command", "json")}
    try:
        result = run_bench(**options, log=print)
    except ValueError as e:
        raise UsageError(f"%nbinfer bench: {e}") from None
    print()
    print(result["table"])
    if result.get("ratio_table"):
        print()
        print(result["ratio_table"])
    if result.get("roofline_table"):
        print()
        print(result["roofline_table"])
    png = chart_png(result)
    if png is not None:
        from IPython.display import Image
        display(Image(png))
    return None


def chart_png(result: dict) -> bytes | None:
    """Output tokens/s and latency of each system side by side, as PNG (None without matplotlib).
    Rendered off-screen, so it shows (and is saved) whatever the notebook's matplotlib backend."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print("(install matplotlib for the chart)")
        return None
    rows = result["summaries"]
    names = [s.system for s in rows]
    colours = ["#f28e2b" if n == "nbinfer" else "#4e79a7" for n in names]
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    panels = fig.subplots(1, 3)
    bars = [("output tokens/s", [s.output_tps for s in rows]),
            ("TTFT p50 (s)", [s.ttft_p50 for s in rows]),
            ("inter-token latency p50 (ms)", [s.itl_p50 * 1e3 for s in rows])]
    for ax, (title, values) in zip(panels, bars):
        ax.bar(names, values, color=colours)
        ax.set_title(title, fontsize=10)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.3g}", (i, v), ha="center", va="bottom", fontsize=9)
        ax.spines[["top", "right"]].set_visible(False)
    title = f"{result['label']} · {result['device']} · {result['workload']} × {result['num_prompts']}"
    if "ratio" in result:
        title += f" · nbinfer {result['ratio']:.2f}× {result['summaries'][1].system}"
    fig.suptitle(title, fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
