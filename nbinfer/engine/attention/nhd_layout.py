"""The token-major (NHD) paged KV cache of the torch and Triton backends, as vLLM lays it out.

Per layer, K and V are each [num_blocks, block_size, num_kv_heads, head_dim]; token t of a sequence
sits in block block_table[t // block_size] at offset t % block_size.
"""
from __future__ import annotations

import torch

from .base import AttentionBackend


class NHDLayout(AttentionBackend):
    @staticmethod
    def cache_shape(num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int,
                    head_dim: int) -> tuple[int, ...]:
        return (num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim)

    @staticmethod
    def layer_kv(kv_cache: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return kv_cache[layer, 0], kv_cache[layer, 1]

    def copy_blocks(self, kv_cache: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> None:
        kv_cache[:, :, dst] = kv_cache[:, :, src]

    def write_kv(self, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 slot_mapping: torch.Tensor) -> None:
        k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slot_mapping, k)
        v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slot_mapping, v)


def gather_kv(cache: torch.Tensor, block_table: torch.Tensor, length: int) -> torch.Tensor:
    """[length, H, D]: the first `length` tokens of one sequence's context."""
    nblocks = -(-length // cache.shape[1])
    return cache[block_table[:nblocks]].flatten(0, 1)[:length]
