"""Random paged-KV states for attention tests: shuffled block tables, NaN everywhere nothing may be read."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kcheck import randn


@dataclass
class PagedState:
    k_cache: torch.Tensor        # [NB, BS, Hkv, D]
    v_cache: torch.Tensor
    block_tables: torch.Tensor   # [B, W] int32
    seq_lens: torch.Tensor       # [B] int32


def random_paged_state(seq_lens: list[int], page: int, hkv: int, dim: int, dtype, device, gen,
                       spare_blocks: int = 3) -> PagedState:
    """Each sequence's context tokens hold random K/V in randomly placed blocks. Every other cache
    slot (tails of last blocks, unassigned blocks) and every unused table entry points at NaN, so a
    kernel reading anything beyond a context poisons its output."""
    need = [-(-n // page) for n in seq_lens]
    num_blocks = sum(need) + spare_blocks + 1
    poison_block = num_blocks - 1
    k_cache = torch.full((num_blocks, page, hkv, dim), float("nan"), dtype=dtype)
    v_cache = torch.full((num_blocks, page, hkv, dim), float("nan"), dtype=dtype)
    order = torch.randperm(num_blocks - 1, generator=gen).tolist()
    width = max(need) + 2
    tables = torch.full((len(seq_lens), width), poison_block, dtype=torch.int32)
    for i, n in enumerate(seq_lens):
        blocks = [order.pop() for _ in range(need[i])]
        tables[i, :need[i]] = torch.tensor(blocks, dtype=torch.int32)
        flat_k = k_cache[blocks].flatten(0, 1)
        flat_v = v_cache[blocks].flatten(0, 1)
        flat_k[:n] = randn((n, hkv, dim), dtype, "cpu", gen)
        flat_v[:n] = randn((n, hkv, dim), dtype, "cpu", gen)
        k_cache[blocks] = flat_k.view(need[i], page, hkv, dim)
        v_cache[blocks] = flat_v.view(need[i], page, hkv, dim)
    return PagedState(k_cache.to(device), v_cache.to(device), tables.to(device),
                      torch.tensor(seq_lens, dtype=torch.int32, device=device))
