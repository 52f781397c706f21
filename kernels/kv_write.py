"""Scatter a step's new K/V rows into the paged cache. Reference: kv_write_ref below.

Cache layout per layer: [num_blocks, block_size, num_kv_heads, head_dim]; token t goes to flat slot
slot_mapping[t] = block * block_size + offset. A negative slot means "write nothing" (padding).
k and v may be strided views of the fused qkv projection.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_last_dim_contiguous, check_paged_cache, next_pow2


def kv_write_ref(k, v, k_cache, v_cache, slot_mapping) -> None:
    keep = slot_mapping >= 0
    slots = slot_mapping[keep]
    k_cache.view(-1, *k_cache.shape[2:])[slots] = k[keep]
    v_cache.view(-1, *v_cache.shape[2:])[slots] = v[keep]


@triton.jit
def _kv_write_kernel(k_ptr, v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr,
                     k_stride_t, k_stride_h, v_stride_t, v_stride_h, c_stride_slot, c_stride_h,
                     n_heads, head_dim, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + t).to(tl.int64)
    h = tl.arange(0, BLOCK_H)[:, None]
    d = tl.arange(0, BLOCK_D)[None, :]
    heads_to_copy = tl.where(slot >= 0, n_heads, 0)         # a padding token copies nothing
    mask = (h < heads_to_copy) & (d < head_dim)
    dst = slot * c_stride_slot + h * c_stride_h + d
    k = tl.load(k_ptr + t * k_stride_t + h * k_stride_h + d, mask=mask)
    tl.store(k_cache_ptr + dst, k, mask=mask)
    v = tl.load(v_ptr + t * v_stride_t + h * v_stride_h + d, mask=mask)
    tl.store(v_cache_ptr + dst, v, mask=mask)


def kv_write(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    """k, v [T, Hkv, D]; caches [NB, BS, Hkv, D] (contiguous per token); slot_mapping [T] int."""
    for name, t in (("k", k), ("v", v)):
        check_last_dim_contiguous(name, t)
    check_paged_cache(k_cache, v_cache)
    n_tok, hkv, dim = k.shape
    if n_tok:
        _kv_write_kernel[(n_tok,)](
            k, v, k_cache, v_cache, slot_mapping,
            k.stride(0), k.stride(1), v.stride(0), v.stride(1), k_cache.stride(1), k_cache.stride(2),
            hkv, dim, BLOCK_H=next_pow2(hkv), BLOCK_D=next_pow2(dim), num_warps=4)
