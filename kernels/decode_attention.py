"""Paged decode attention: one new query token per sequence over its paged KV context.
Reference: paged_decode_attention_ref below.

Flash-decoding. The grid is (sequence, kv head, split): each program owns one KV head, so K/V are
read once for the whole query-head group sharing it (GQA/MQA), and one slice of the context. With
one split the program writes the final output. With several, stage 1 writes each slice's
normalised partial output and its log-sum-exp, and stage 2 merges the slices. Splits keep the GPU
busy when batch * kv_heads is small and contexts are long.

Everything that varies from step to step (context lengths, block tables) is read on the device; the
number of splits is a launch constant the caller picks from an upper bound of the context length.
That makes the launch capturable once in a CUDA graph and replayable for any lengths up to the bound.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_last_dim_contiguous, check_paged_cache, dot_precision, next_pow2

_LOG2E = 1.4426950408889634


def paged_decode_attention_ref(q, k_cache, v_cache, block_tables, seq_lens, scale):
    """q [B, Hq, D]; caches [NB, BS, Hkv, D]; block_tables [B, W]; seq_lens [B]. fp32 math."""
    bs, hkv = k_cache.shape[1], k_cache.shape[2]
    group = q.shape[1] // hkv
    out = torch.empty_like(q)
    for b in range(q.shape[0]):
        n = int(seq_lens[b])
        blocks = block_tables[b, :-(-n // bs)].long()
        keys = k_cache[blocks].flatten(0, 1)[:n].float().repeat_interleave(group, dim=1)   # [n, Hq, D]
        vals = v_cache[blocks].flatten(0, 1)[:n].float().repeat_interleave(group, dim=1)
        scores = torch.einsum("hd,nhd->hn", q[b].float(), keys) * scale
        out[b] = torch.einsum("hn,nhd->hd", scores.softmax(-1), vals).to(q.dtype)
    return out


@triton.jit
def _decode_kernel(q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, seq_lens_ptr,
                   out_ptr, part_ptr, lse_ptr, scale_log2,
                   q_stride_b, q_stride_h, out_stride_b, out_stride_h,
                   c_stride_slot, c_stride_h, bt_stride,
                   GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE: tl.constexpr, NUM_SPLITS: tl.constexpr,
                   BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr,
                   USE_DOT: tl.constexpr, DOT_PRECISION: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(seq_lens_ptr + b)
    # each split's slice is a whole number of tiles, so no tile straddles two splits
    per_split = tl.cdiv(tl.cdiv(seq_len, NUM_SPLITS), BLOCK_N) * BLOCK_N
    start = split * per_split
    end = tl.minimum(start + per_split, seq_len)

    g = tl.arange(0, BLOCK_H)
    heads = kv_head * GROUP + g
    hmask = g < GROUP
    d = tl.arange(0, BLOCK_D)
    dmask = d < HEAD_DIM
    q = tl.load(q_ptr + b * q_stride_b + heads[:, None] * q_stride_h + d[None, :],
                mask=hmask[:, None] & dmask[None, :], other=0.0)

    m = tl.full([BLOCK_H], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_H], tl.float32)
    acc = tl.zeros([BLOCK_H, BLOCK_D], tl.float32)
    table = block_tables_ptr + b * bt_stride
    for n0 in range(start, end, BLOCK_N):
        toks = n0 + tl.arange(0, BLOCK_N)
        tmask = toks < end
        page = tl.load(table + toks // PAGE, mask=tmask, other=0).to(tl.int64)
        offs = (page * PAGE + toks % PAGE)[:, None] * c_stride_slot + kv_head * c_stride_h + d[None, :]
        kvmask = tmask[:, None] & dmask[None, :]
        k = tl.load(k_cache_ptr + offs, mask=kvmask, other=0.0)
        if USE_DOT:
            s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION)
        else:   # one query head per KV head (MHA): a tensor-core tile would be 1/16 used
            s = tl.sum(q.to(tl.float32)[:, None, :] * k.to(tl.float32)[None, :, :], axis=2)
        s = tl.where(tmask[None, :], s * scale_log2, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(s - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        v = tl.load(v_cache_ptr + offs, mask=kvmask, other=0.0)
        if USE_DOT:
            pv = tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        else:
            pv = tl.sum(p[:, :, None] * v.to(tl.float32)[None, :, :], axis=1)
        acc = acc * alpha[:, None] + pv
        m = m_new

    omask = hmask[:, None] & dmask[None, :]
    if NUM_SPLITS == 1:
        out = acc / l[:, None]
        tl.store(out_ptr + b * out_stride_b + heads[:, None] * out_stride_h + d[None, :],
                 out.to(out_ptr.dtype.element_ty), mask=omask)
    else:
        # an empty slice (context shorter than the split) leaves l = 0: weight 0 in the merge
        nonempty = l > 0
        out = acc / tl.where(nonempty, l, 1.0)[:, None]
        lse = tl.where(nonempty, m + tl.log2(tl.where(nonempty, l, 1.0)), float("-inf"))
        row = (b * (GROUP * tl.num_programs(1)) + heads) * NUM_SPLITS + split     # [B, Hq, S] flattened
        tl.store(part_ptr + row[:, None] * HEAD_DIM + d[None, :], out, mask=omask)
        tl.store(lse_ptr + row, lse, mask=hmask)


@triton.jit
def _merge_kernel(part_ptr, lse_ptr, out_ptr, out_stride_b, out_stride_h,
                  HEAD_DIM: tl.constexpr, NUM_SPLITS: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, BLOCK_D)
    smask = s < NUM_SPLITS
    dmask = d < HEAD_DIM
    row = (b * tl.num_programs(1) + h) * NUM_SPLITS + s
    lse = tl.load(lse_ptr + row, mask=smask, other=float("-inf"))
    weight = tl.exp2(lse - tl.max(lse, axis=0))          # split 0 is never empty: max is finite
    part = tl.load(part_ptr + row[:, None] * HEAD_DIM + d[None, :], mask=smask[:, None] & dmask[None, :], other=0.0)
    out = tl.sum(weight[:, None] * part, axis=0) / tl.sum(weight, axis=0)
    tl.store(out_ptr + b * out_stride_b + h * out_stride_h + d, out.to(out_ptr.dtype.element_ty), mask=dmask)


def num_kv_splits(batch: int, num_kv_heads: int, max_seq_len: int, num_sms: int,
                  min_tokens_per_split: int = 256, max_splits: int = 32) -> int:
    """Enough programs to fill the GPU several times over, but no slice shorter than
    min_tokens_per_split (a short slice costs a merge for little parallel work)."""
    want = triton.cdiv(8 * num_sms, max(1, batch * num_kv_heads))
    cap = triton.cdiv(max_seq_len, min_tokens_per_split)
    return max(1, min(want, cap, max_splits))


def paged_decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, seq_lens: torch.Tensor, scale: float,
                           out: torch.Tensor | None = None, num_splits: int = 1,
                           block_n: int | None = None, num_warps: int = 4, num_stages: int = 2,
                           use_dot: bool | None = None) -> torch.Tensor:
    """q [B, Hq, D] (one token per sequence); k/v_cache [NB, BS, Hkv, D]; block_tables [B, W] int32;
    seq_lens [B] int32 (context length including the new token, whose K/V are already written).
    Returns out [B, Hq, D] (written into `out` when given). block_n, num_warps, num_stages, use_dot
    (tensor-core tiles with the head group padded to 16 rows; default: only when the group is > 1)
    are tuning knobs for scripts/gpu_check.py's sweep."""
    check_last_dim_contiguous("q", q)
    check_paged_cache(k_cache, v_cache)
    batch, hq, dim = q.shape
    _, page, hkv, _ = k_cache.shape
    if hq % hkv:
        raise ValueError(f"query heads ({hq}) must be a multiple of KV heads ({hkv})")
    group = hq // hkv
    if out is None:
        out = torch.empty_like(q)
    check_last_dim_contiguous("out", out)
    if batch == 0:
        return out
    use_dot = group > 1 if use_dot is None else use_dot
    block_h = max(16, next_pow2(group)) if use_dot else next_pow2(group)
    block_d = max(16, next_pow2(dim))
    block_n = block_n or (64 if dim <= 128 else 32)
    if num_splits > 1:
        part = torch.empty((batch, hq, num_splits, dim), dtype=torch.float32, device=q.device)
        lse = torch.empty((batch, hq, num_splits), dtype=torch.float32, device=q.device)
    else:
        part = lse = out       # unused when NUM_SPLITS == 1
    _decode_kernel[(batch, hkv, num_splits)](
        q, k_cache, v_cache, block_tables, seq_lens, out, part, lse, scale * _LOG2E,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1),
        k_cache.stride(1), k_cache.stride(2), block_tables.stride(0),
        GROUP=group, HEAD_DIM=dim, PAGE=page, NUM_SPLITS=num_splits,
        BLOCK_H=block_h, BLOCK_D=block_d, BLOCK_N=block_n,
        USE_DOT=use_dot, DOT_PRECISION=dot_precision(q.dtype), num_warps=num_warps, num_stages=num_stages)
    if num_splits > 1:
        _merge_kernel[(batch, hq)](part, lse, out, out.stride(0), out.stride(1),
                                   HEAD_DIM=dim, NUM_SPLITS=num_splits, BLOCK_S=next_pow2(num_splits),
                                   BLOCK_D=block_d, num_warps=4)
    return out

