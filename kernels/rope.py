"""Rotary position embedding applied to q and k in one launch. Reference: nbinfer.kernels.ops.rope_ref
(= nbinfer.models.rope.apply_rope, HF's rotate-half form).

cos/sin are rows of the fp32 table from nbinfer/models/rope.py (default, linear, llama3, yarn
scaling are all baked into that table), gathered for each token's position. One program per token
rotates all its q and k heads; q and k may be strided views of the fused qkv projection, the outputs
are contiguous [T, H, D]. Like HF, cos/sin are rounded to the activation dtype first; the rotation
itself is computed in fp32 and rounded once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import check_last_dim_contiguous, next_pow2


@triton.jit
def _rotate(x_ptr, out_ptr, t, x_stride_t, x_stride_h, out_stride_t, out_stride_h, n_heads,
            c1, c2, s1, s2, d, dmask, HALF: tl.constexpr, BLOCK_H: tl.constexpr):
    h = tl.arange(0, BLOCK_H)
    mask = (h < n_heads)[:, None] & dmask[None, :]
    base = x_ptr + t * x_stride_t + h[:, None] * x_stride_h + d[None, :]
    x1 = tl.load(base, mask=mask, other=0.0)
    x2 = tl.load(base + HALF, mask=mask, other=0.0)
    a, b = x1.to(tl.float32), x2.to(tl.float32)
    o1 = a * c1[None, :] - b * s1[None, :]
    o2 = b * c2[None, :] + a * s2[None, :]
    obase = out_ptr + t * out_stride_t + h[:, None] * out_stride_h + d[None, :]
    tl.store(obase, o1.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(obase + HALF, o2.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(q_ptr, k_ptr, cos_ptr, sin_ptr, q_out_ptr, k_out_ptr,
                 q_stride_t, q_stride_h, k_stride_t, k_stride_h, cs_stride,
                 qo_stride_t, qo_stride_h, ko_stride_t, ko_stride_h, n_q_heads, n_k_heads,
                 HALF: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_HQ: tl.constexpr, BLOCK_HK: tl.constexpr):
    t = tl.program_id(0).to(tl.int64)
    d = tl.arange(0, BLOCK_D)
    dmask = d < HALF
    act = q_out_ptr.dtype.element_ty
    row = t * cs_stride + d
    c1 = tl.load(cos_ptr + row, mask=dmask, other=0.0).to(act).to(tl.float32)
    c2 = tl.load(cos_ptr + row + HALF, mask=dmask, other=0.0).to(act).to(tl.float32)
    s1 = tl.load(sin_ptr + row, mask=dmask, other=0.0).to(act).to(tl.float32)
    s2 = tl.load(sin_ptr + row + HALF, mask=dmask, other=0.0).to(act).to(tl.float32)
    _rotate(q_ptr, q_out_ptr, t, q_stride_t, q_stride_h, qo_stride_t, qo_stride_h, n_q_heads,
            c1, c2, s1, s2, d, dmask, HALF, BLOCK_HQ)
    _rotate(k_ptr, k_out_ptr, t, k_stride_t, k_stride_h, ko_stride_t, ko_stride_h, n_k_heads,
            c1, c2, s1, s2, d, dmask, HALF, BLOCK_HK)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               q_out: torch.Tensor | None = None, k_out: torch.Tensor | None = None):
    """q [T, Hq, D], k [T, Hk, D] (strided views allowed), cos/sin [T, D] -> new contiguous (q, k).
    q_out / k_out: optional destinations (may be q / k themselves: each element is read before written)."""
    for name, t in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        check_last_dim_contiguous(name, t)
    if cos.stride(0) != sin.stride(0):
        cos, sin = cos.contiguous(), sin.contiguous()
    n_tok, hq, dim = q.shape
    hk = k.shape[1]
    if dim % 2:
        raise ValueError(f"RoPE needs an even head_dim, got {dim}")
    if q_out is None:
        q_out = torch.empty((n_tok, hq, dim), dtype=q.dtype, device=q.device)
    if k_out is None:
        k_out = torch.empty((n_tok, hk, dim), dtype=k.dtype, device=k.device)
    check_last_dim_contiguous("q_out", q_out)
    check_last_dim_contiguous("k_out", k_out)
    if n_tok:
        half = dim // 2
        _rope_kernel[(n_tok,)](
            q, k, cos, sin, q_out, k_out,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos.stride(0),
            q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1), hq, hk,
            HALF=half, BLOCK_D=next_pow2(half), BLOCK_HQ=next_pow2(hq), BLOCK_HK=next_pow2(hk),
            num_warps=4)
    return q_out, k_out
