"""The two canvas widgets of the dashboard (anywidget): the KV block map and the throughput chart.
All their state lives in synced traits, so a saved notebook keeps the last frame."""
from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from .frame import REQUEST_COLOURS, STATE_COLOURS

_STATIC = Path(__file__).parent / "static"


class BlockMap(anywidget.AnyWidget):
    """One square per KV block (see frame.py for the byte encoding)."""

    _esm = _STATIC / "block_map.js"
    _css = """
    .nbinfer-blockmap-canvas { display: block; image-rendering: pixelated; }
    .nbinfer-blockmap-info { font: 11px/1.5 var(--jp-ui-font-family, sans-serif); opacity: .75;
                             min-height: 1.5em; }
    .nbinfer-blockmap-legend { font: 11px/1.5 var(--jp-ui-font-family, sans-serif); margin-top: 4px;
                               display: flex; gap: 12px; flex-wrap: wrap; }
    .nbinfer-blockmap-swatch { display: inline-block; width: 9px; height: 9px; border-radius: 2px;
                               margin-right: 3px; vertical-align: -1px; }
    """
    blocks = traitlets.Bytes(b"").tag(sync=True)
    blocks_per_cell = traitlets.Int(1).tag(sync=True)
    owners = traitlets.Dict().tag(sync=True)           # colour slot (str) -> request id, for hover text
    caption = traitlets.Unicode("").tag(sync=True)
    width = traitlets.Int(640).tag(sync=True)
    state_colours = traitlets.Dict(dict(STATE_COLOURS)).tag(sync=True)
    request_colours = traitlets.List(list(REQUEST_COLOURS)).tag(sync=True)


class Sparkline(anywidget.AnyWidget):
    """Prefill and decode tokens/s, one sample per SAMPLE_S, newest on the right."""

    _esm = _STATIC / "sparkline.js"
    prefill = traitlets.List(traitlets.Float()).tag(sync=True)
    decode = traitlets.List(traitlets.Float()).tag(sync=True)
    capacity = traitlets.Int(120).tag(sync=True)        # samples across the full width
    width = traitlets.Int(300).tag(sync=True)
    height = traitlets.Int(64).tag(sync=True)
    prefill_colour = traitlets.Unicode("#4e79a7").tag(sync=True)
    decode_colour = traitlets.Unicode("#f28e2b").tag(sync=True)
