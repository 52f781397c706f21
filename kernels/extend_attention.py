"""Paged prefill/extend attention: a chunk of new tokens per sequence attends causally to itself and
to the sequence's cached prefix, all read from the paged KV cache. Reference: paged_extend_attention_ref.

This one kernel covers a fresh prefill (empty prefix), a radix-cache hit (prefix = the matched
blocks) and every chunk of a chunked prefill (prefix = the chunks before). The new tokens' K/V must
already be in the cache (the backend writes them first), so the kernel needs no second KV source.

Grid: (query tile, query head, sequence). Query row j of sequence i sits at position
prefix_i + j and sees keys 0..prefix_i + j; tiles wholly above the diagonal are never loaded.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_last_dim_contiguous, check_paged_cache, dot_precision, next_pow2

_LOG2E = 1.4426950408889634


def paged_extend_attention_ref(q, k_cache, v_cache, block_tables, seq_lens, query_start_loc, scale,
                               first_seq: int = 0):
    """q [T, Hq, D] packed; sequences first_seq.. own q[qsl[i]:qsl[i+1]]. fp32 math.
    Returns out [T, Hq, D] with only those sequences' rows filled (others are zero)."""
    bs, hkv = k_cache.shape[1], k_cache.shape[2]
    group = q.shape[1] // hkv
    out = torch.zeros_like(q)
    for i in range(first_seq, seq_lens.shape[0]):
        lo, hi, n = int(query_start_loc[i]), int(query_start_loc[i + 1]), int(seq_lens[i])
        blocks = block_tables[i, :-(-n // bs)].long()
        keys = k_cache[blocks].flatten(0, 1)[:n].float().repeat_interleave(group, dim=1)
        vals = v_cache[blocks].flatten(0, 1)[:n].float().repeat_interleave(group, dim=1)
        qpos = torch.arange(n - (hi - lo), n)[:, None]
        visible = torch.arange(n)[None, :] <= qpos                           # [Lq, n]
        scores = torch.einsum("qhd,nhd->hqn", q[lo:hi].float(), keys) * scale
        scores = scores.masked_fill(~visible, float("-inf"))
        out[lo:hi] = torch.einsum("hqn,nhd->qhd", scores.softmax(-1), vals).to(q.dtype)
    return out


@triton.jit
def _extend_kernel(q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, seq_lens_ptr, qsl_ptr, out_ptr,
                   scale_log2, first_seq,
                   q_stride_t, q_stride_h, out_stride_t, out_stride_h, c_stride_slot, c_stride_h, bt_stride,
                   GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                   DOT_PRECISION: tl.constexpr):
    tile = tl.program_id(0)
    head = tl.program_id(1)
    seq = (tl.program_id(2) + first_seq).to(tl.int64)
    q_start = tl.load(qsl_ptr + seq)
    q_len = tl.load(qsl_ptr + seq + 1) - q_start
    if tile * BLOCK_M >= q_len:
        return
    ctx_len = tl.load(seq_lens_ptr + seq)
    prefix = ctx_len - q_len
    kv_head = head // GROUP

    rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < q_len
    d = tl.arange(0, BLOCK_D)
    dmask = d < HEAD_DIM
    tok_rows = (q_start + rows).to(tl.int64)
    q = tl.load(q_ptr + tok_rows[:, None] * q_stride_t + head * q_stride_h + d[None, :],
                mask=rmask[:, None] & dmask[None, :], other=0.0)
    qpos = prefix + rows                                   # each query row's position in the context

    m = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    table = block_tables_ptr + seq * bt_stride
    end = tl.minimum(ctx_len, prefix + (tile + 1) * BLOCK_M)   # the tile's last row sees up to here
    for n0 in range(0, end, BLOCK_N):
        toks = n0 + tl.arange(0, BLOCK_N)
        tmask = toks < end
        page = tl.load(table + toks // PAGE, mask=tmask, other=0).to(tl.int64)
        offs = (page * PAGE + toks % PAGE)[:, None] * c_stride_slot + kv_head * c_stride_h + d[None, :]
        kvmask = tmask[:, None] & dmask[None, :]
        k = tl.load(k_cache_ptr + offs, mask=kvmask, other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * scale_log2
        visible = (toks[None, :] <= qpos[:, None]) & tmask[None, :]
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))        # key 0 is visible to every row: m_new is finite
        alpha = tl.exp2(m - m_new)
        p = tl.exp2(s - m_new[:, None])
        l = l * alpha + tl.sum(p, axis=1)
        v = tl.load(v_cache_ptr + offs, mask=kvmask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)
        m = m_new

    out = acc / l[:, None]
    tl.store(out_ptr + tok_rows[:, None] * out_stride_t + head * out_stride_h + d[None, :],
             out.to(out_ptr.dtype.element_ty), mask=rmask[:, None] & dmask[None, :])


def paged_extend_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                           block_tables: torch.Tensor, seq_lens: torch.Tensor, query_start_loc: torch.Tensor,
                           scale: float, max_query_len: int, out: torch.Tensor | None = None,
                           first_seq: int = 0, block_m: int | None = None, block_n: int | None = None,
                           num_warps: int = 4, num_stages: int = 2) -> torch.Tensor:
    """q [T, Hq, D] packed; sequence i (for i >= first_seq) owns q[qsl[i]:qsl[i+1]] and has seq_lens[i]
    context tokens, the last of them its new ones. Writes those sequences' rows of `out`."""
    check_last_dim_contiguous("q", q)
    check_paged_cache(k_cache, v_cache)
    _, hq, dim = q.shape
    _, page, hkv, _ = k_cache.shape
    if hq % hkv:
        raise ValueError(f"query heads ({hq}) must be a multiple of KV heads ({hkv})")
    if out is None:
        out = torch.empty_like(q)
    check_last_dim_contiguous("out", out)
    num_seqs = seq_lens.shape[0] - first_seq
    if num_seqs <= 0 or max_query_len <= 0:
        return out
    block_m = block_m or 64
    block_n = block_n or (64 if dim <= 128 else 32)
    grid = (triton.cdiv(max_query_len, block_m), hq, num_seqs)
    _extend_kernel[grid](
        q, k_cache, v_cache, block_tables, seq_lens, query_start_loc, out, scale * _LOG2E, first_seq,
        q.stride(0), q.stride(1), out.stride(0), out.stride(1), k_cache.stride(1), k_cache.stride(2),
        block_tables.stride(0),
        GROUP=hq // hkv, HEAD_DIM=dim, PAGE=page, BLOCK_M=block_m, BLOCK_N=block_n,
        BLOCK_D=max(16, next_pow2(dim)), DOT_PRECISION=dot_precision(q.dtype), num_warps=num_warps,
        num_stages=num_stages)
    return out
