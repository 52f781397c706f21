"""Radix tree over full KV blocks, keyed by the block's token ids (SGLang's RadixAttention, page-granular).

A node is one full block: its key is the block's tokens, its path from the root is the whole prefix,
so a block's KV is valid exactly where the node sits. Reference counts live in the BlockPool; the tree
only decides which unreferenced leaves to evict, least recently used first (a lazy heap).
"""
from __future__ import annotations

import heapq
import itertools
from typing import Callable


class Node:
    __slots__ = ("key", "block", "parent", "children", "last_access", "alive")

    def __init__(self, key: tuple, block: int, parent: "Node | None"):
        self.key = key
        self.block = block
        self.parent = parent
        self.children: dict[tuple, Node] = {}
        self.last_access = 0
        self.alive = True


class RadixCache:
    def __init__(self, block_size: int, refcount: Callable[[int], int]):
        self.block_size = block_size
        self._ref = refcount
        self.root = Node((), -1, None)
        self._by_block: dict[int, Node] = {}
        self._clock = itertools.count(1)
        self._heap: list[tuple[int, int, Node]] = []   # (last_access, tiebreak, node), lazily invalidated
        self._tiebreak = itertools.count()

    def __contains__(self, block: int) -> bool:
        return block in self._by_block

    def __len__(self) -> int:
        return len(self._by_block)

    def blocks(self):
        """Every block in the tree (referenced or not)."""
        return self._by_block.keys()

    def _key(self, tokens, i: int) -> tuple:
        bs = self.block_size
        return tuple(tokens[i * bs:(i + 1) * bs])

    def match(self, tokens, max_blocks: int) -> list[int]:
        """Blocks of the longest cached prefix of `tokens` (whole blocks, at most max_blocks)."""
        node, blocks, now = self.root, [], next(self._clock)
        for i in range(max_blocks):
            child = node.children.get(self._key(tokens, i))
            if child is None:
                break
            child.last_access = now
            blocks.append(child.block)
            node = child
        return blocks

    def peek(self, tokens, max_blocks: int) -> list[int]:
        """Like match, without touching recency (used to rank waiting requests)."""
        node, blocks = self.root, []
        for i in range(max_blocks):
            node = node.children.get(self._key(tokens, i))
            if node is None:
                break
            blocks.append(node.block)
        return blocks

    def insert(self, tokens, blocks: list[int], start: int, hint: Node | None) -> Node:
        """Insert full blocks[start:] (their tokens are tokens[:len(blocks)*bs]) below the prefix.

        `hint` is the node of block start-1 from an earlier call, if it is still in the tree; a block
        whose prefix is already cached under another block id stays private to its sequence.
        """
        node = hint if hint is not None and hint.alive else None
        if node is None:
            node, start = self.root, 0
        now = next(self._clock)
        for i in range(start, len(blocks)):
            key = self._key(tokens, i)
            child = node.children.get(key)
            if child is None:
                if blocks[i] in self._by_block:    # this block already sits elsewhere in the tree
                    return node
                child = Node(key, blocks[i], node)
                node.children[key] = child
                self._by_block[blocks[i]] = child
            child.last_access = now
            node = child
        return node

    def on_unreferenced(self, block: int) -> None:
        """The block's last holder let go: if it is a leaf it becomes an eviction candidate."""
        node = self._by_block[block]
        if not node.children:
            self._push(node)

    def _push(self, node: Node) -> None:
        heapq.heappush(self._heap, (node.last_access, next(self._tiebreak), node))
        if len(self._heap) > 2 * len(self._by_block) + 64:
            self._compact()

    def _compact(self) -> None:
        """Entries go stale (node touched, reused or evicted since) and are only dropped by evict(),
        which runs only when the pool runs short: rebuild from the live candidates so the heap stays
        O(tree) however many requests reuse the same cached prefix. Amortised O(1) per push."""
        self._heap = [(n.last_access, next(self._tiebreak), n) for n in self._by_block.values()
                      if not n.children and not self._ref(n.block)]
        heapq.heapify(self._heap)

    def evict(self, n: int) -> list[int]:
        """Remove up to n unreferenced leaves, least recently used first; returns their blocks."""
        freed: list[int] = []
        while len(freed) < n and self._heap:
            stamp, _, node = heapq.heappop(self._heap)
            if not node.alive or node.children or self._ref(node.block) or stamp != node.last_access:
                if node.alive and not node.children and not self._ref(node.block):
                    self._push(node)          # touched since it was queued: requeue at its new age
                continue
            parent = node.parent
            del parent.children[node.key]
            del self._by_block[node.block]
            node.alive = False
            freed.append(node.block)
            if parent is not self.root and not parent.children and not self._ref(parent.block):
                self._push(parent)
        return freed

    def reset(self) -> None:
        for node in self._by_block.values():
            node.alive = False
        self.root = Node((), -1, None)
        self._by_block.clear()
        self._heap.clear()
