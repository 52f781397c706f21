"""The dashboard's widget (anywidget): one model holding a whole frame, so a frame reaches the browser as
one message and is drawn at once. Its state lives in synced traits, so a notebook saved with widget
state keeps the last frame.

The front end is one ES module joined from static/: block_map.js and sparkline.js (drawing functions),
then dashboard.js (the layout and its default export)."""
from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

from .frame import REQUEST_COLOURS, STATE_COLOURS

_STATIC = Path(__file__).parent / "static"
_MODULES = ("block_map.js", "sparkline.js", "dashboard.js")

# The static snapshot beside the live view (see fallback.py) is for renderers without this widget.
# Where the widget's styles are loaded, the widget is showing, so the snapshot hides.
SNAPSHOT_CLASS = "nbinfer-dashboard-snapshot"

_CSS = f"""
.{SNAPSHOT_CLASS} {{ display: none; }}
.jp-OutputArea-child:has(.{SNAPSHOT_CLASS}) {{ display: none; }}
.nbinfer-dashboard {{ font-family: var(--jp-ui-font-family, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif);
  font-size: 13px; line-height: 1.45; padding: 10px 14px; border: 1px solid rgba(127,127,127,.3);
  border-radius: 6px; box-sizing: content-box; }}
.nbinfer-dashboard .nbinfer-header {{ font-size: 14px; margin-bottom: 8px; }}
.nbinfer-dashboard .nbinfer-section {{ font-size: 11px; font-weight: 600; letter-spacing: .06em;
  text-transform: uppercase; opacity: .6; margin: 6px 0 3px; }}
.nbinfer-dashboard .nbinfer-dim {{ opacity: .65; }}
.nbinfer-dashboard .nbinfer-occupancy-row {{ display: flex; align-items: center; gap: 10px; margin-bottom: 4px; }}
.nbinfer-dashboard .nbinfer-bar {{ flex: 1 1 330px; min-width: 120px; max-width: 330px; height: 14px;
  background: rgba(127,127,127,.15); border-radius: 2px; overflow: hidden; }}
.nbinfer-dashboard .nbinfer-bar-fill {{ height: 100%; background: #f28e2b; }}
.nbinfer-dashboard .nbinfer-occupancy-text {{ white-space: nowrap; }}
.nbinfer-dashboard .nbinfer-blockmap-canvas {{ display: block; image-rendering: pixelated; }}
.nbinfer-dashboard .nbinfer-blockmap-info {{ font-size: 11px; opacity: .75; min-height: 1.5em; }}
.nbinfer-dashboard .nbinfer-blockmap-legend {{ font-size: 11px; margin-top: 4px; display: flex; gap: 12px;
  flex-wrap: wrap; }}
.nbinfer-dashboard .nbinfer-blockmap-swatch, .nbinfer-dashboard .nbinfer-swatch {{ display: inline-block;
  width: 9px; height: 9px; border-radius: 2px; margin-right: 3px; vertical-align: -1px; }}
.nbinfer-dashboard .nbinfer-columns {{ display: flex; gap: 30px; margin-top: 4px; }}
.nbinfer-dashboard .nbinfer-column {{ flex: 1 1 0; min-width: 0; }}
.nbinfer-dashboard .nbinfer-sparkline {{ display: block; }}
.nbinfer-dashboard .nbinfer-membar {{ display: flex; height: 14px; border-radius: 3px; overflow: hidden;
  width: 100%; margin: 6px 0; }}
.nbinfer-dashboard .nbinfer-legend {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1px 10px; font-size: 12px; }}
"""


class DashboardView(anywidget.AnyWidget):
    """Every trait below is part of one frame (see dashboard.py for how they are computed)."""

    _esm = "\n".join((_STATIC / name).read_text() for name in _MODULES)
    _css = _CSS

    frame_id = traitlets.Int(0).tag(sync=True)              # one more per frame that changed anything
    width = traitlets.Int(660).tag(sync=True)
    header = traitlets.Unicode("").tag(sync=True)            # HTML, like every Unicode trait below
    occupancy = traitlets.Float(0.0).tag(sync=True)          # blocks used / total, for the bar
    occupancy_label = traitlets.Unicode("").tag(sync=True)
    # the block map (block_grid.py)
    codes = traitlets.Bytes(b"").tag(sync=True)
    used = traitlets.Bytes(b"").tag(sync=True)
    cached = traitlets.Bytes(b"").tag(sync=True)
    blocks_total = traitlets.Int(0).tag(sync=True)
    grid_columns = traitlets.Int(0).tag(sync=True)
    owners = traitlets.Dict().tag(sync=True)                 # colour slot (str) -> request id
    cell_owners = traitlets.Dict().tag(sync=True)
    caption = traitlets.Unicode("").tag(sync=True)           # plain text under the map
    state_colours = traitlets.Dict(dict(STATE_COLOURS)).tag(sync=True)
    request_colours = traitlets.List(list(REQUEST_COLOURS)).tag(sync=True)
    # throughput: one sample per publisher.SAMPLE_S, newest last
    prefill = traitlets.List(traitlets.Float()).tag(sync=True)
    decode = traitlets.List(traitlets.Float()).tag(sync=True)
    capacity = traitlets.Int(120).tag(sync=True)
    prefill_colour = traitlets.Unicode("#4e79a7").tag(sync=True)
    decode_colour = traitlets.Unicode("#f28e2b").tag(sync=True)
    rates = traitlets.Unicode("").tag(sync=True)
    memory = traitlets.Unicode("").tag(sync=True)
    batch_title = traitlets.Unicode("").tag(sync=True)
    table = traitlets.Unicode("").tag(sync=True)

    def view_bundle(self) -> dict:
        """The widget view alone: no text/plain repr of the traits, since renderers without widgets
        show the snapshot output beside it instead."""
        bundle = self._repr_mimebundle_()
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        return {k: v for k, v in data.items() if k != "text/plain"}
