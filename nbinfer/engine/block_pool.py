"""KV block manager: a fixed pool of blocks with reference counts, backed by the radix prefix cache.

Every block is in exactly one state: free (on the free list), used (referenced by a sequence) or
cached (in the radix tree, unreferenced, evictable). free + used + cached == total at all times.
"""
from __future__ import annotations

from .free_blocks import ContiguousFreeBlocks, FifoFreeBlocks
from .radix_cache import Node, RadixCache


class BlockPool:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True,
                 contiguous: bool = False):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.ref = [0] * num_blocks
        self._free = ContiguousFreeBlocks(num_blocks) if contiguous else FifoFreeBlocks(num_blocks)
        self.cache = RadixCache(block_size, self.ref.__getitem__) if enable_prefix_caching else None
        self._num_cached = 0          # blocks in the tree with ref == 0

    # -- accounting -------------------------------------------------------------------------------
    @property
    def num_free(self) -> int:
        return len(self._free)

    @property
    def num_cached(self) -> int:
        return self._num_cached

    @property
    def num_used(self) -> int:
        return self.num_blocks - len(self._free) - self._num_cached

    def num_available(self) -> int:
        """Blocks an allocation can get: free ones plus evictable cached ones."""
        return len(self._free) + self._num_cached

    @property
    def prefix_caching(self) -> bool:
        return self.cache is not None

    def cached_block_ids(self) -> list[int]:
        if self.cache is None:
            return []
        return [b for b in self.cache.blocks() if self.ref[b] == 0]

    # -- allocation -------------------------------------------------------------------------------
    def allocate(self, n: int, after: int | None = None) -> list[int] | None:
        """n fresh blocks (ref 1 each), evicting LRU cached blocks if needed; None if impossible.
        `after`: the sequence's last block, which the new ones should follow if they can."""
        if n <= 0:
            return []
        if n > self.num_available():
            return None
        short = n - len(self._free)
        if short > 0:
            evicted = self.cache.evict(short)
            self._num_cached -= len(evicted)
            self._free.push(evicted)
            if len(self._free) < n:   # cached blocks whose leaves are pinned by referenced children
                return None
        blocks = self._free.take(n, after)
        for b in blocks:
            self.ref[b] = 1
        return blocks

    def incref(self, blocks: list[int]) -> None:
        for b in blocks:
            if self.ref[b] == 0:
                self._num_cached -= 1          # only cached blocks can be revived at ref 0
            self.ref[b] += 1

    def release(self, blocks: list[int]) -> None:
        for b in blocks:
            r = self.ref[b] - 1
            assert r >= 0, f"block {b} released more often than referenced"
            self.ref[b] = r
            if r == 0:
                if self.cache is not None and b in self.cache:
                    self._num_cached += 1
                    self.cache.on_unreferenced(b)
                else:
                    self._free.push((b,))

    def fork(self, blocks: list[int], num_tokens: int) -> list[int] | None:
        """Blocks for a copy of a sequence whose first num_tokens sit in `blocks`: the full ones shared
        (one more reference each), the partial last one a fresh block (the caller copies its KV);
        None when no block is left for it."""
        full = num_tokens // self.block_size
        fresh = self.allocate(1, after=blocks[-1]) if num_tokens % self.block_size else []
        if fresh is None:
            return None
        shared = blocks[:full]
        self.incref(shared)
        return shared + fresh

    # -- prefix cache -----------------------------------------------------------------------------
    def match_prefix(self, tokens, max_tokens: int) -> list[int]:
        """Referenced blocks of the longest cached prefix of tokens[:max_tokens] (whole blocks)."""
        if self.cache is None or max_tokens < self.block_size:
            return []
        blocks = self.cache.match(tokens, max_tokens // self.block_size)
        self.incref(blocks)
        return blocks

    def cached_prefix_blocks(self, tokens, max_tokens: int) -> int:
        """How many whole blocks of tokens[:max_tokens] the cache holds, without touching recency
        (to rank waiting requests)."""
        if self.cache is None:
            return 0
        return len(self.cache.peek(tokens, max_tokens // self.block_size))

    def insert_full_blocks(self, tokens, blocks: list[int], num_full: int, start: int,
                           hint: Node | None) -> Node | None:
        """Publish blocks[start:num_full] (computed, full) to the prefix cache; returns the new hint."""
        if self.cache is None or num_full <= start:
            return hint
        return self.cache.insert(tokens, blocks[:num_full], start, hint)

    def reset_prefix_cache(self) -> None:
        """Drop every cached (unreferenced) block; referenced ones stay with their sequences."""
        if self.cache is None:
            return
        cached = self.cached_block_ids()
        self.cache.reset()
        self._num_cached = 0
        self._free.push(cached)
