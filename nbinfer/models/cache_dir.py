"""Where nbinfer keeps what it fetches or derives once: $NBINFER_CACHE_DIR, else $XDG_CACHE_HOME/nbinfer,
else ~/.cache/nbinfer (read at each call, so a test or a user can move it at run time)."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("NBINFER_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "nbinfer"
