"""What one step tells the attention backend: where each new token goes and what each sequence sees.

Token t of a sequence lives in block block_table[t // block_size] at offset t % block_size, i.e. at
slot block * block_size + offset of the backend's flattened cache (each backend owns its layout).

A step's tokens are packed: sequence i owns q[query_start_loc[i]:query_start_loc[i+1]] and attends
causally to the first seq_lens[i] tokens of its context (cached prefix + the new tokens). The first
num_decodes sequences have exactly one new token, so backends can batch them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor       # [T] int64: cache slot of each new token
    query_start_loc: torch.Tensor    # [B + 1] int32
    seq_lens: torch.Tensor           # [B] int32: context length after this step
    block_tables: torch.Tensor       # [B, max_blocks] int32, padded with 0
    num_decodes: int                 # leading sequences with one new token
    max_query_len: int
    max_seq_len: int
    query_lens_cpu: list[int]
    seq_lens_cpu: list[int]
    block_tables_cpu: list[list[int]] | None = None   # the same tables as lists (host backends)
    _runs: list | None = None

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_cpu)

    def block_runs(self, i: int, block_size: int) -> list[tuple[int, int]]:
        """Sequence i's context blocks as (first block, count) runs of consecutive ids (computed
        once a step, used by every layer)."""
        if self._runs is None:
            self._runs = [None] * self.num_seqs
        if self._runs[i] is None:
            needed = -(-self.seq_lens_cpu[i] // block_size)
            self._runs[i] = consecutive_runs(self.block_tables_cpu[i][:needed])
        return self._runs[i]

    def context_pieces(self, i: int, block_size: int) -> list[tuple[int, int]] | None:
        """Sequence i's context as (first slot, length) pieces of consecutive slots, for a host
        backend to read as views; None where it should gather a copy instead (no host tables, or
        the context lies in more than MAX_RUNS pieces)."""
        if self.block_tables_cpu is None:
            return None
        runs = self.block_runs(i, block_size)
        if len(runs) > MAX_RUNS:
            return None
        pieces, left = [], self.seq_lens_cpu[i]
        for first, count in runs:
            take = min(count * block_size, left)
            pieces.append((first * block_size, take))
            left -= take
        return pieces


MAX_RUNS = 4    # a context in more pieces than this is gathered into one copy instead


def consecutive_runs(blocks: list[int]) -> list[tuple[int, int]]:
    runs = []
    start = prev = blocks[0]
    for b in blocks[1:]:
        if b != prev + 1:
            runs.append((start, prev - start + 1))
            start = b
        prev = b
    runs.append((start, prev - start + 1))
    return runs
