"""AttentionBackend: what the model runner needs from a paged-attention implementation.

A backend owns its KV cache layout (the runner allocates, slices and copies the cache only through
cache_shape / layer_kv / copy_blocks) and computes one step: write the new K/V into the cache, attend
the leading decode tokens as a batch, then the prefill chunks. The prefill loop here (one SDPA per
chunk, over the new tokens alone or over the cached context) serves the host backends; a backend with
a fused kernel for all chunks overrides prefill().
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
import torch.nn.functional as F

from .metadata import AttentionMetadata


class AttentionBackend(ABC):
    name: ClassVar[str]
    wants_contiguous_blocks: ClassVar[bool] = False   # the block pool should place a sequence's blocks in runs
    supports_cuda_graphs: ClassVar[bool] = False      # its decode reads only device tensors (capturable)

    # -- the cache --------------------------------------------------------------------------------
    @staticmethod
    @abstractmethod
    def cache_shape(num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int,
                    head_dim: int) -> tuple[int, ...]:
        """Shape of the one tensor holding every layer's K and V."""

    @staticmethod
    @abstractmethod
    def layer_kv(kv_cache: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_cache, v_cache) of one layer, as forward() takes them."""

    @abstractmethod
    def copy_blocks(self, kv_cache: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> None:
        """Copy blocks src[i] -> dst[i] in every layer (copy-on-fork of a partial block)."""

    # -- a step -----------------------------------------------------------------------------------
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor, meta: AttentionMetadata, scale: float) -> torch.Tensor:
        """q [T, Hq, D], k/v [T, Hk, D]: the step's packed new tokens; returns [T, Hq, D]."""
        self.write_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        out = torch.empty_like(q)
        nd = meta.num_decodes
        if nd:
            self.decode(q[:nd], k_cache, v_cache, meta, scale, out[:nd])
        if meta.num_seqs > nd:
            self.prefill(q, k, v, k_cache, v_cache, meta, scale, out)
        return out

    @abstractmethod
    def write_kv(self, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 slot_mapping: torch.Tensor) -> None:
        """Store the step's new K/V at their slots."""

    @abstractmethod
    def decode(self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata,
               scale: float, out: torch.Tensor) -> None:
        """The first meta.num_decodes sequences' one query token each: q, out [num_decodes, Hq, D]."""

    def prefill(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor, meta: AttentionMetadata, scale: float, out: torch.Tensor) -> None:
        """Sequences num_decodes.. (prefill chunks), one at a time, into their rows of out."""
        pos = meta.num_decodes
        for i in range(meta.num_decodes, meta.num_seqs):
            qlen, ctx = meta.query_lens_cpu[i], meta.seq_lens_cpu[i]
            if ctx == qlen:    # nothing cached before this chunk: attend to the new tokens only
                ki, vi = k[pos:pos + qlen], v[pos:pos + qlen]
            else:
                ki, vi = self.context(k_cache, v_cache, meta, i)
            out[pos:pos + qlen] = causal_sdpa(q[pos:pos + qlen], ki, vi, scale)
            pos += qlen

    def context(self, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata,
                i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence i's whole context K, V as [seq_lens[i], Hk, D] (for the default prefill loop)."""
        raise NotImplementedError(f"{type(self).__name__} overrides prefill() and reads no context")


def causal_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """q [Lq, Hq, D] are the last Lq positions of a context k/v [Lk, Hk, D]."""
    lq, lk = q.shape[0], k.shape[0]
    hq, hk = q.shape[1], k.shape[1]
    qt, kt, vt = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    if lq == lk:
        o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale, enable_gqa=hq != hk)
    else:
        rows = torch.arange(lk - lq, lk, device=q.device)[:, None]
        mask = torch.arange(lk, device=q.device)[None, :] <= rows
        o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=hq != hk)
    return o.transpose(0, 1)
