"""The dashboard's publisher: a daemon thread that turns llm.stats() (or, while connected to a remote
server, its /metrics) into one frame per tick.

It runs while cells run and while the kernel is idle, and ticks once more at the end of every cell
(which also brings the static snapshot up to date). Unchanged traits send nothing, so once the
throughput chart's last minute is all idle, an idle dashboard costs no messages. Widget (comm) messages need no cell
parent: the frontend routes them by comm id, and leaving them on the kernel's current parent lets
nbclient record the widget state while it executes later cells, so a saved notebook keeps the last frame.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque

from . import session
from .remote_frame import RemoteMetricsReader

log = logging.getLogger("nbinfer")

SAMPLE_S = 0.5             # throughput chart: one sample every half second...
SAMPLES = 120              # ...over the last minute


class Publisher:
    def __init__(self, dashboard, interval: float = 0.1):
        self.dashboard = dashboard
        self.interval = max(0.1, interval)       # at most 10 frames a second
        self.prefill: deque[float] = deque([0.0] * SAMPLES, maxlen=SAMPLES)
        self.decode: deque[float] = deque([0.0] * SAMPLES, maxlen=SAMPLES)
        self._last_sample = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()            # ticks from the thread and from show_dashboard()
        self._reader: RemoteMetricsReader | None = None     # while connected to a remote server
        self.frames = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="nbinfer-dashboard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)
        self._thread = None

    def on_engine_change(self, llm) -> None:
        with self._lock:
            self.dashboard.reset()
            self.prefill.extend([0.0] * SAMPLES)
            self.decode.extend([0.0] * SAMPLES)
        self.tick()

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(self.interval):
            try:
                self.tick()
                failures = 0
            except Exception:            # e.g. the comm went away; keep trying, but do not spin
                failures += 1
                if failures == 1:
                    log.exception("nbinfer dashboard: frame failed")
                if failures > 50:
                    return

    def on_cell_end(self, result=None) -> None:
        try:
            self.tick(final=True)
        except Exception:           # a frame must never fail the user's cell
            log.exception("nbinfer dashboard: frame failed")

    def tick(self, final: bool = False) -> None:
        with self._lock:
            stats = self._stats()
            now = time.monotonic()
            if now - self._last_sample >= SAMPLE_S:
                self._last_sample = now
                self.prefill.append(round(stats.prefill_tokens_per_s, 1) if stats else 0.0)
                self.decode.append(round(stats.decode_tokens_per_s, 1) if stats else 0.0)
            self.dashboard.apply(self.dashboard.build(stats), list(self.prefill), list(self.decode), final)
            self.frames += 1

    def _stats(self):
        """The local engine's EngineStats, or a connected remote's RemoteFrame (from its /metrics)."""
        remote = session.current_remote()
        if remote is not None:
            if self._reader is None or self._reader.remote is not remote:
                self._reader = RemoteMetricsReader(remote)
            return self._reader.frame()
        self._reader = None
        llm = session.current_llm()
        if llm is None:
            return None
        try:
            return llm.stats()
        except RuntimeError:        # shut down between the lookup and the call
            return None
