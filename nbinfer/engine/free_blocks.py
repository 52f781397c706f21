"""Free KV blocks and where a new one comes from.

FifoFreeBlocks hands blocks out in the order they were freed: O(1), no placement. Fine where the
attention kernel reads paged KV in place (Triton on a GPU): a block's position does not matter.

ContiguousFreeBlocks places them: a sequence grows into the block right after its last one when that
one is free, and a new sequence starts in the middle of the largest free gap, leaving room for its
neighbour to grow as well. A sequence's KV then sits in a few contiguous runs, which the torch
backend reads as views instead of gathering copies (measured on this CPU: attention over a 2,000
token context 116 us from a view, 306 us gathered).
"""
from __future__ import annotations

from collections import deque

import numpy as np


class FifoFreeBlocks:
    def __init__(self, num_blocks: int):
        self._queue = deque(range(num_blocks))

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, blocks) -> None:
        self._queue.extend(blocks)

    def take(self, n: int, after: int | None = None) -> list[int]:
        return [self._queue.popleft() for _ in range(n)]


class ContiguousFreeBlocks:
    def __init__(self, num_blocks: int):
        self._free = np.ones(num_blocks, dtype=bool)
        self._count = num_blocks

    def __len__(self) -> int:
        return self._count

    def push(self, blocks) -> None:
        blocks = list(blocks)
        self._free[blocks] = True
        self._count += len(blocks)

    def take(self, n: int, after: int | None = None) -> list[int]:
        """n free blocks (the caller checked there are enough), continuing `after` where possible."""
        out: list[int] = []
        b = -1 if after is None else after
        while len(out) < n:
            b += 1
            if b < 0 or b >= len(self._free) or not self._free[b] or (after is None and not out):
                b = self._gap_start(n - len(out))
            out.append(b)
            self._free[b] = False
            self._count -= 1
        return out

    def _gap_start(self, want: int) -> int:
        """Where a new run of `want` blocks should begin: inside the largest free gap, halfway along
        the room it does not need, unless the gap starts the pool (nobody before it grows)."""
        edges = np.diff(np.concatenate(([0], self._free.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        i = int(np.argmax(ends - starts))
        start, length = int(starts[i]), int(ends[i] - starts[i])
        if start == 0 or length <= want:
            return start
        return start + (length - want) // 2
