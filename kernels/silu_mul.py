"""SiLU(gate) * up over a merged gate_up projection. Reference: nbinfer.kernels.ops.silu_and_mul_ref.

Reads [T, 2I] once and writes [T, I]: the unfused torch version writes silu(gate) and reads it back.
silu(gate) is rounded to the activation dtype before the product, as torch does.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_BLOCK = 1024


@triton.jit
def _silu_mul_kernel(x_ptr, out_ptr, n_cols, x_stride, out_stride, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    gate = tl.load(x_ptr + row * x_stride + cols, mask=mask, other=0.0)
    up = tl.load(x_ptr + row * x_stride + n_cols + cols, mask=mask, other=0.0)
    g = gate.to(tl.float32)
    silu = (g / (1.0 + tl.exp(-g))).to(gate.dtype).to(tl.float32)
    tl.store(out_ptr + row * out_stride + cols, (silu * up.to(tl.float32)).to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(gate_up: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """[..., 2I] -> [..., I]; out: optional contiguous destination."""
    shape = gate_up.shape
    n = shape[-1] // 2
    x = gate_up.reshape(-1, shape[-1])
    if x.stride(-1) != 1:
        x = x.contiguous()
    out = torch.empty((x.shape[0], n), dtype=x.dtype, device=x.device) if out is None else out.view(x.shape[0], n)
    if x.shape[0]:
        _silu_mul_kernel[(x.shape[0], triton.cdiv(n, _BLOCK))](x, out, n, x.stride(0), out.stride(0),
                                                               BLOCK=_BLOCK, num_warps=4)
    return out.view(*shape[:-1], n)
