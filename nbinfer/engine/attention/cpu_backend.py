"""CPU attention backend: paged KV kept head-major, with K transposed, so decode reads unit-stride rows.

Layout, per layer: K [Hk, D, S] and V [Hk, S, D], where S = num_blocks * block_size slots and token t
of a sequence sits at slot block_table[t // block_size] * block_size + t % block_size (the same slot
numbering as the NHD layout of nhd_layout.py). Within a block, each KV head's K is a [D, block_size]
tile and its V a [block_size, D] tile of unit-stride rows, which is what memory-bound decode wants.

Decode runs in the C++ kernel (kernels/cpu_decode.py): all sequences of a step in one call, on every
engine thread. Where it is not built (no compiler, fp16, head_dim not a multiple of 16), a torch
loop does the same per sequence: bmm(q [Hk, G, D], K) -> softmax -> bmm(p, V), on views where the
context sits in a few runs of consecutive blocks. Mixed workload, 64 requests, tiny model, 2 vCPUs:
decode attention took 26.8 s with the NHD layout, 17 s with this layout's torch loop, and the whole
run went from 38.2 s to 28.4 s with the kernel. Prefill chunks go through the C++ prefill kernel (every
chunk of a step in one call); without it, through the base class's SDPA loop, as the torch backend's do.
"""
from __future__ import annotations

import torch

from ...kernels import cpu_decode
from ..cpu_threads import small_ops
from .base import AttentionBackend
from .metadata import AttentionMetadata


class CpuAttention(AttentionBackend):
    name = "cpu"
    wants_contiguous_blocks = True      # the block pool places a sequence's blocks in runs

    def __init__(self, block_size: int, threads: int | None = None, use_kernel: bool = True):
        self.block_size = block_size
        self.threads = threads or torch.get_num_threads()
        # the C++ decode kernel (kernels/cpu_decode.py) where it builds; else the torch loop below
        self.kernel = cpu_decode.load() if use_kernel else None

    # -- the cache --------------------------------------------------------------------------------
    @staticmethod
    def cache_shape(num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int,
                    head_dim: int) -> tuple[int, ...]:
        return (num_layers, 2, num_kv_heads, head_dim, num_blocks * block_size)

    @staticmethod
    def layer_kv(kv_cache: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        k = kv_cache[layer, 0]                                   # [Hk, D, S]
        return k, kv_cache[layer, 1].view(k.shape[0], k.shape[2], k.shape[1])   # V [Hk, S, D]

    def copy_blocks(self, kv_cache: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> None:
        layers, _, hk, d, slots = kv_cache.shape
        bs = self.block_size
        k = kv_cache[:, 0].view(layers, hk, d, slots // bs, bs)
        v = kv_cache[:, 1].view(layers, hk, slots // bs, bs, d)
        k[:, :, :, dst] = k[:, :, :, src]
        v[:, :, dst] = v[:, :, src]

    # -- a step -----------------------------------------------------------------------------------
    def write_kv(self, k, v, k_cache, v_cache, slot_mapping) -> None:
        k_cache.index_copy_(2, slot_mapping, k.permute(1, 2, 0))
        v_cache.index_copy_(1, slot_mapping, v.transpose(0, 1))

    def decode(self, q, k_cache, v_cache, meta: AttentionMetadata, scale: float, out) -> None:
        nd = q.shape[0]
        if self.kernel is not None and cpu_decode.supports(k_cache, k_cache.shape[1]):
            grouped = (nd, k_cache.shape[0], -1, k_cache.shape[1])      # [B, Hk, G, D]
            qs, o = (q * scale).float().view(grouped), _fp32_out(out).view(grouped)
            cpu_decode.paged_decode(self.kernel, qs, k_cache, v_cache, meta.block_tables[:nd],
                                    meta.seq_lens[:nd], o, self.block_size, self.threads)
            _copy_back(o, out)
        else:
            self._decode_loop(q * scale, k_cache, v_cache, meta, out)

    def prefill(self, q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float, out) -> None:
        if self.kernel is None or not cpu_decode.supports(k_cache, k_cache.shape[1]):
            return super().prefill(q, k, v, k_cache, v_cache, meta, scale, out)
        # every prefill token of the step in one C++ call through the block tables (SDPA with GQA
        # takes torch's math path: 13.5 ms vs 5 ms for a 350-token prompt on one core)
        nd = meta.num_decodes
        grouped = (-1, k_cache.shape[0], q.shape[1] // k_cache.shape[0], q.shape[2])
        qs, o = (q[nd:] * scale).float().view(grouped), _fp32_out(out[nd:]).view(grouped)
        cpu_decode.paged_prefill(self.kernel, qs, k_cache, v_cache, meta.block_tables[nd:], meta.query_lens_cpu[nd:],
                                 meta.seq_lens_cpu[nd:], o, self.block_size, self.threads)
        _copy_back(o, out[nd:])

    def context(self, k_cache, v_cache, meta: AttentionMetadata, i: int):
        slots = self._slots(meta, i)
        return k_cache.index_select(2, slots).permute(2, 0, 1), v_cache.index_select(1, slots).transpose(0, 1)

    def _slots(self, meta: AttentionMetadata, i: int) -> torch.Tensor:
        bs, n = self.block_size, meta.seq_lens_cpu[i]
        blocks = meta.block_tables[i, :-(-n // bs)].long()
        return (blocks[:, None] * bs + torch.arange(bs, device=blocks.device)).flatten()[:n]

    def _decode_loop(self, qs: torch.Tensor, k_cache, v_cache, meta: AttentionMetadata, out: torch.Tensor) -> None:
        """One pre-scaled query token per sequence, looped: each context is read at its own length
        (no padding), in place where it sits in a few runs of consecutive blocks. The loop is the
        per-sequence cost of this backend, so it calls as few ops as it can (out=, no copies)."""
        nd, hq, d = qs.shape
        hk = k_cache.shape[0]
        qs = qs.view(nd, hk, hq // hk, d)         # GQA: a KV head's G query heads are matmul rows
        outs = out[:nd].view(nd, hk, hq // hk, d)
        bs, fp32 = self.block_size, qs.dtype == torch.float32
        with small_ops(qs.device):
            for i in range(nd):
                pieces = meta.context_pieces(i, bs)
                if pieces is None:
                    slots = self._slots(meta, i)
                    ks, vs = [k_cache.index_select(2, slots)], [v_cache.index_select(1, slots)]
                else:
                    ks = [k_cache[:, :, a:a + take] for a, take in pieces]
                    vs = [v_cache[:, a:a + take] for a, take in pieces]
                scores = torch.cat([torch.bmm(qs[i], k) for k in ks], -1) if len(ks) > 1 else torch.bmm(qs[i], ks[0])
                probs = scores.softmax(-1) if fp32 else scores.float().softmax(-1).to(qs.dtype)
                if len(vs) == 1:
                    torch.bmm(probs, vs[0], out=outs[i])
                else:
                    o, at = 0, 0
                    for vr in vs:
                        o = o + torch.bmm(probs[..., at:at + vr.shape[1]], vr)
                        at += vr.shape[1]
                    outs[i] = o


def _fp32_out(out: torch.Tensor) -> torch.Tensor:
    """Where the kernels write (always fp32): out itself, or a scratch when the model runs in bf16."""
    return out if out.dtype == torch.float32 else torch.empty(out.shape, dtype=torch.float32)


def _copy_back(written: torch.Tensor, out: torch.Tensor) -> None:
    if written.data_ptr() != out.data_ptr():
        out.copy_(written.view(out.shape))
