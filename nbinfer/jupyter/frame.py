"""One dashboard frame computed from an EngineStats snapshot (no widgets here: the live dashboard, the
static HTML fallback and `%nbinfer status` all draw from this). The block map's cells are in
block_grid.py; a request's colour is REQUEST_COLOURS[slot % len] (the JS cycles the same palette).
"""
from __future__ import annotations

from dataclasses import dataclass

from .block_grid import BlockGrid, block_grid

# colours shared by the canvas (block_map.js reads them from the widget) and the static HTML
STATE_COLOURS = {"free": "#e6e8eb", "cached": "#9fc5e8", "shared": "#3d4a5c"}
REQUEST_COLOURS = ["#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#edc948", "#76b7b2", "#ff9da7",
                   "#9c755f", "#4e79a7", "#d37295", "#8cd17d", "#f1ce63"]


class ColourSlots:
    """Stable colour per request across frames: a request keeps its slot until it leaves."""

    def __init__(self):
        self.slots: dict[str, int] = {}

    def update(self, request_ids) -> dict[str, int]:
        live = set(request_ids)
        for rid in list(self.slots):
            if rid not in live:
                del self.slots[rid]
        taken = set(self.slots.values())
        free = (k for k in range(10**6) if k not in taken)
        for rid in request_ids:
            if rid not in self.slots:
                self.slots[rid] = next(free)
        return dict(self.slots)


@dataclass(frozen=True)
class RequestRow:
    request_id: str
    state: str
    prompt_tokens: int
    output_tokens: int          # summed over the request's n samples
    max_tokens: int             # the most output tokens the request can produce, all samples together
    blocks: int
    colour: str
    n: int = 1                  # samples: each runs as its own sequence once the prompt is prefilled
    origin: str = "api"         # who sent it: "api" (this notebook), "server" (`%nbinfer serve`'s clients)

    @property
    def progress(self) -> float:
        return min(1.0, self.output_tokens / self.max_tokens) if self.max_tokens else 0.0


@dataclass(frozen=True)
class Frame:
    model: str
    device: str
    dtype: str
    grid: BlockGrid            # the block map
    blocks_total: int
    blocks_used: int
    blocks_cached: int
    blocks_free: int
    block_size: int
    occupancy: float           # used / total
    num_running: int           # sequences (a request with n samples runs n of them), as the engine counts
    num_waiting: int           # sequences
    num_preempted_total: int
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    prompt_tokens_total: int
    generation_tokens_total: int
    prefix_hit_tokens: int
    weights_bytes: int
    kv_cache_bytes: int
    rows: tuple[RequestRow, ...]

    @property
    def kv_used_bytes(self) -> int:
        return self.kv_cache_bytes * self.blocks_used // max(1, self.blocks_total)

    @property
    def kv_cached_bytes(self) -> int:
        return self.kv_cache_bytes * self.blocks_cached // max(1, self.blocks_total)

    @property
    def kv_free_bytes(self) -> int:
        return self.kv_cache_bytes - self.kv_used_bytes - self.kv_cached_bytes

    @property
    def busy(self) -> bool:
        return bool(self.num_running or self.num_waiting)

    @property
    def blocks_shared(self) -> int:
        return self.grid.blocks_shared

    @property
    def num_requests(self) -> int:
        return len(self.rows)

    @property
    def sequences_differ(self) -> bool:
        """Whether counting sequences and counting requests give different numbers (some n > 1)."""
        return any(r.n > 1 for r in self.rows)


def build_frame(stats, colours: ColourSlots) -> Frame:
    order = sorted(stats.requests, key=_request_order)
    slots = colours.update(order)
    rows = tuple(RequestRow(rid, r.state, r.prompt_tokens, r.output_tokens, _max_output(r), len(r.block_ids),
                            REQUEST_COLOURS[slots[rid] % len(REQUEST_COLOURS)], getattr(r, "n", 1),
                            getattr(r, "origin", "api"))
                 for rid in order for r in [stats.requests[rid]])
    return Frame(
        model=stats.model, device=stats.device, dtype=stats.dtype, grid=block_grid(stats, slots),
        blocks_total=stats.blocks_total, blocks_used=stats.blocks_used,
        blocks_cached=stats.blocks_cached, blocks_free=stats.blocks_free,
        block_size=stats.block_size, occupancy=stats.occupancy, num_running=stats.num_running,
        num_waiting=stats.num_waiting, num_preempted_total=stats.num_preempted_total,
        prefill_tokens_per_s=stats.prefill_tokens_per_s, decode_tokens_per_s=stats.decode_tokens_per_s,
        prompt_tokens_total=stats.prompt_tokens_total, generation_tokens_total=stats.generation_tokens_total,
        prefix_hit_tokens=stats.prefix_hit_tokens, weights_bytes=stats.weights_bytes,
        kv_cache_bytes=stats.kv_cache_bytes, rows=rows)


def _max_output(r) -> int:
    # RequestStats.output_tokens sums the n samples while max_tokens is per sample
    return r.max_tokens * r.n


def percent(share: float) -> str:
    """A share as a percentage that never rounds a small use to 0% or a nearly full pool to 100%:
    36 blocks of 8,192 read "0.4%", not "0%"."""
    p = 100 * share
    if p <= 0 or p >= 100:
        return f"{max(0.0, min(p, 100.0)):.0f}%"
    if p < 0.1:
        return "<0.1%"
    if p > 99.9:
        return ">99.9%"
    return f"{p:.1f}%" if p < 1 or p > 99 else f"{p:.0f}%"


def _request_order(rid: str):
    # req-12 after req-9: numeric suffixes sort as numbers
    head, _, tail = rid.rpartition("-")
    return (head, int(tail), "") if tail.isdigit() else (rid, -1, rid)


def human_bytes(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} B"
