"""The dashboard's static snapshot: an output beside each live view, kept at the last frame.

Renderers without the live widget show it: GitHub, nbconvert and nbviewer, and JupyterLab reopening a
notebook saved without widget state (jupyterlab_widgets saves widget state only when its `saveState`
setting is on, and it is off by default). The live view's own output is never updated to refresh it:
JupyterLab answers an update of a widget-view output by building a new view, which flickers and leaks
the old one. So the snapshot is a display-id output of its own (HTML + text, no script), refreshed
from the publisher at most every INTERVAL_S (longer for big snapshots) and at the end of every cell,
and hidden by the widget's stylesheet wherever the widget itself is showing (widgets.SNAPSHOT_CLASS).

Updates are not routed to the cell that showed the snapshot: JupyterLab delivers an update to every
output with its display id whatever cell is running, while nbclient (notebooks run headless) reads
only the running cell's messages, so an update must go out as the running cell's.
"""
from __future__ import annotations

import threading
import time
import uuid

from .frame import Frame
from .status import status_html, status_text
from .widgets import SNAPSHOT_CLASS

INTERVAL_S = 1.0
MAX_OUTPUTS = 8              # snapshots kept current: the newest views (older cells are likely gone)
BYTES_PER_S = 100_000        # a busy 200,000-block map is ~250 kB of SVG: then one refresh per 2.5 s


def snapshot_bundle(frame: Frame | None) -> dict:
    note = ('<div style="font-size:11px;color:#888">nbinfer dashboard · a static copy of its last frame '
            '(the live widget shows where the notebook runs)</div>')
    return {"text/html": f'<div class="{SNAPSHOT_CLASS}">{status_html(frame, with_block_map=True)}{note}</div>',
            "text/plain": status_text(frame)}


class Snapshot:
    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._outputs: list[str] = []                         # display ids
        self._frame: Frame | None = None                      # the frame the outputs show
        self._last = 0.0
        self._interval = INTERVAL_S
        self._lock = threading.Lock()

    def show(self, frame: Frame | None) -> None:
        """Display a snapshot output in the running cell (after the live view)."""
        from IPython.display import display

        display_id = uuid.uuid4().hex
        display(snapshot_bundle(frame), raw=True, display_id=display_id)
        with self._lock:
            if not self._outputs:
                self._frame, self._last = frame, self.clock()
            self._outputs = [*self._outputs, display_id][-MAX_OUTPUTS:]

    def refresh(self, frame: Frame | None, now: bool = False) -> None:
        """Bring every snapshot output to `frame`, unless one was sent within the interval (and not
        `now`): a later call (the publisher ticks every 0.1 s) then sends the frame current by then."""
        from IPython.display import update_display

        with self._lock:
            clock = self.clock()
            if not self._outputs or frame == self._frame or (not now and clock - self._last < self._interval):
                return
            bundle = snapshot_bundle(frame)
            for display_id in self._outputs:
                update_display(bundle, raw=True, display_id=display_id)
            self._frame, self._last = frame, clock
            self._interval = max(INTERVAL_S, len(bundle["text/html"]) / BYTES_PER_S)
