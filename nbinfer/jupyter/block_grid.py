"""The KV block map's data: what each drawn cell holds, computed from one EngineStats snapshot.

Up to PER_BLOCK_LIMIT blocks every block is its own cell. A bigger pool (a GPU holds 10^5 blocks and
more) is drawn as a fixed GRID_COLUMNS x GRID_ROWS grid of C cells: block b of N is in cell b*C//N,
so cell i stands for the consecutive blocks [ceil(i*N/C), ceil((i+1)*N/C)). Each cell then shows the
share of its blocks in use and cached, so 36 used blocks in a pool of 8,192 are a visible bar, not
one dash among thousands of grey squares.

Per cell (what the canvas and the static SVG draw):
    codes   one byte: the colour of the cell's used share -- 2 shared (several sequences hold the
            blocks), 3 + k the request in colour slot k that holds most of them -- or, with nothing
            in use, 1 cached prefix / 0 free
    used    uint16 (little-endian): blocks held by requests; cached: uint16, blocks kept only by the
            prefix cache; free is the rest of the cell's range (a cell holds at most N/1024 blocks:
            uint16 is enough up to 67M blocks)
    owners  for hover text, cells whose holders the code alone does not name (every cell in use on
            a grid, shared blocks per block): str(cell) -> [shared, more, slot, blocks, slot, blocks, ...]
            listing the TOP_OWNERS biggest holders, `more` counting the others
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FREE, CACHED, SHARED, FIRST_REQUEST = 0, 1, 2, 3
PER_BLOCK_LIMIT = 2048
GRID_COLUMNS, GRID_ROWS = 64, 16
TOP_OWNERS = 3


@dataclass(frozen=True)
class BlockGrid:
    blocks_total: int
    codes: bytes
    used: bytes
    cached: bytes
    owners: dict[str, list[int]]
    blocks_shared: int

    @property
    def cells(self) -> int:
        return len(self.codes)

    @property
    def per_block(self) -> bool:
        return self.cells == self.blocks_total

    @property
    def columns(self) -> int:
        """Grid columns, or 0 where each block is a cell (the drawing picks its own layout)."""
        return 0 if self.per_block else GRID_COLUMNS

    def block_range(self, cell: int) -> tuple[int, int]:
        """[first, end) of the blocks cell `cell` stands for."""
        n, c = self.blocks_total, self.cells
        return -(-cell * n // c), -(-(cell + 1) * n // c)

    def used_counts(self) -> np.ndarray:
        return np.frombuffer(self.used, dtype="<u2")

    def cached_counts(self) -> np.ndarray:
        return np.frombuffer(self.cached, dtype="<u2")


def empty_grid() -> BlockGrid:
    return BlockGrid(0, b"", b"", b"", {}, 0)


def block_grid(stats, slots: dict[str, int]) -> BlockGrid:
    """The grid for `stats`; `slots` gives each request's colour slot (see frame.ColourSlots)."""
    n = stats.blocks_total
    if n == 0:
        return empty_grid()
    cells = n if n <= PER_BLOCK_LIMIT else GRID_COLUMNS * GRID_ROWS
    cell_of = lambda ids: ids * cells // n          # noqa: E731  (the ranges of the docstring)

    held = [(rid, r.block_ids) for rid, r in stats.requests.items() if r.block_ids]
    ids = np.concatenate([np.fromiter(b, dtype=np.int64, count=len(b)) for _, b in held]) if held else \
        np.zeros(0, dtype=np.int64)
    holder_slots = np.repeat(np.array([slots[rid] for rid, _ in held], dtype=np.int64),
                             [len(b) for _, b in held]) if held else np.zeros(0, dtype=np.int64)
    holders = np.bincount(ids, minlength=n)
    shared = holders > 1
    engine_shared = getattr(stats, "shared_block_ids", ()) or ()   # n > 1: one request's samples share
    if engine_shared:
        shared[np.fromiter(engine_shared, dtype=np.int64)] = True
    cached_ids = np.fromiter(stats.cached_block_ids or (), dtype=np.int64)

    used = np.bincount(cell_of(np.flatnonzero(holders)), minlength=cells)
    shared_per_cell = np.bincount(cell_of(np.flatnonzero(shared)), minlength=cells)
    cached = np.bincount(cell_of(cached_ids), minlength=cells)

    codes = np.where(cached > 0, CACHED, FREE).astype(np.uint8)
    owners: dict[str, list[int]] = {}
    if len(ids):
        # (cell, slot) pairs with their block counts, biggest holder of each cell first
        span = int(holder_slots.max()) + 1
        pairs, counts = np.unique(cell_of(ids) * span + holder_slots, return_counts=True)
        pair_cells, pair_slots = np.divmod(pairs, span)
        order = np.lexsort((-counts, pair_cells))
        pair_cells, pair_slots, counts = pair_cells[order], pair_slots[order], counts[order]
        starts = np.flatnonzero(np.r_[True, pair_cells[1:] != pair_cells[:-1]])
        sizes = np.diff(np.r_[starts, len(pair_cells)])
        top_cells, top_slots, top_counts = pair_cells[starts], pair_slots[starts], counts[starts]
        codes[top_cells] = np.where(shared_per_cell[top_cells] >= top_counts, SHARED,
                                    FIRST_REQUEST + top_slots % (256 - FIRST_REQUEST))
        # a block's code names its one holder; a grid cell, or a block shared by several, needs the list
        named = np.flatnonzero(sizes > 1) if cells == n else np.arange(len(starts))
        for g in named:
            first, shown = starts[g], min(TOP_OWNERS, int(sizes[g]))
            cell = int(pair_cells[first])
            owners[str(cell)] = [int(shared_per_cell[cell]), int(sizes[g]) - shown] + [
                int(v) for k in range(first, first + shown) for v in (pair_slots[k], counts[k])]
    return BlockGrid(n, codes.tobytes(), used.astype("<u2").tobytes(), cached.astype("<u2").tobytes(),
                     owners, int(shared.sum()))
