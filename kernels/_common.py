"""Small helpers shared by the kernel launchers."""
from __future__ import annotations

import torch
import triton


def interpreted(kernel) -> bool:
    """Whether a @triton.jit function was defined under TRITON_INTERPRET=1 (runs on CPU tensors)."""
    return type(kernel).__name__ == "InterpretedFunction"


def next_pow2(n: int) -> int:
    return triton.next_power_of_2(n)


def dot_precision(dtype: torch.dtype) -> str:
    # fp32 activations get exact fp32 products (tf32 would cost ~3e-4 relative error and break
    # greedy parity with the torch backend); half types use the tensor cores' native path.
    return "ieee" if dtype == torch.float32 else "tf32"


def check_last_dim_contiguous(name: str, t: torch.Tensor) -> None:
    if t.stride(-1) != 1:
        raise ValueError(f"{name} must be contiguous in its last dimension (got strides {tuple(t.stride())})")


def check_paged_cache(k_cache: torch.Tensor, v_cache: torch.Tensor) -> None:
    """Kernels address token slot s of a [NB, BS, Hkv, D] cache as s * stride(1): each block's tokens
    must be laid out back to back, and K and V must share one layout."""
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape or k_cache.stride() != v_cache.stride():
        raise ValueError("k_cache and v_cache must both be [num_blocks, block_size, num_kv_heads, head_dim] "
                         "with the same layout")
    _, bs, h, d = k_cache.shape
    if k_cache.stride() != (bs * h * d, h * d, d, 1):
        raise ValueError(f"paged KV cache must be contiguous, got strides {tuple(k_cache.stride())}")
