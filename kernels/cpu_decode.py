"""The CPU backend's paged-attention kernels (cpu/paged_attention.cpp, built by cpu_build.py): decode
(one query token per sequence) and prefill (every prefill token of a step, causal, through the tables).

Why C++ and not torch ops: a decode step's attention is one small GEMM pair per sequence, so a torch
loop pays Python and dispatch overhead per sequence and runs on one core (each OpenMP region entered
from the engine thread costs tens of microseconds, more than the op). The kernel runs every sequence
of a step in one call, on the library's thread pool, and releases the GIL while it does. There is no
maintained library for paged attention on CPU for current torch, so it is ours; its reference is the
torch loop in nbinfer/engine/attention/cpu_backend.py, which also serves wherever the kernel is not built.
"""
from __future__ import annotations

import ctypes

import numpy as np
import torch

from . import cpu_build

_SUFFIX = {torch.float32: "f32", torch.bfloat16: "bf16"}     # the cache dtypes the kernels read


def load():
    """The library with the decode kernel's signature set, or None where it cannot be built here."""
    lib = cpu_build.library()
    if lib is not None and not getattr(lib, "_paged_decode_ready", False):
        for suffix in _SUFFIX.values():
            fn = getattr(lib, f"nbinfer_paged_decode_{suffix}")
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 4 + [ctypes.c_int64] + [ctypes.c_int] * 3
            fn = getattr(lib, f"nbinfer_paged_prefill_{suffix}")
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int] * 4 + [ctypes.c_int64] + [ctypes.c_int] * 3
        lib._paged_decode_ready = True
    return lib


def supports(cache: torch.Tensor, head_dim: int) -> bool:
    """The kernel's cases: an fp32 or bf16 cache on the CPU, head_dim a multiple of 16 (its vector width).
    Queries and outputs are fp32 whatever the cache holds."""
    return cache.dtype in _SUFFIX and cache.device.type == "cpu" and head_dim % 16 == 0


def paged_decode(lib, qs: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                 seq_lens: torch.Tensor, out: torch.Tensor, block_size: int, threads: int) -> None:
    """out[i] = softmax(qs[i] K_i) V_i for every decode sequence i, in one call.
    qs, out [B, Hk, G, D] (qs pre-scaled); k_cache [Hk, D, S]; v_cache [Hk, S, D];
    block_tables [B, W] int32; seq_lens [B] int32. All contiguous CPU tensors: qs, out fp32, the caches
    fp32 or bf16."""
    b, hk, g, d = qs.shape
    for t in (qs, k_cache, v_cache, block_tables, seq_lens, out):
        assert t.is_contiguous() and t.device.type == "cpu"
    assert block_tables.dtype == seq_lens.dtype == torch.int32 and k_cache.shape == (hk, d, v_cache.shape[1])
    assert qs.dtype == out.dtype == torch.float32 and k_cache.dtype == v_cache.dtype
    kernel = getattr(lib, f"nbinfer_paged_decode_{_SUFFIX[k_cache.dtype]}")
    kernel(qs.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), block_tables.data_ptr(), seq_lens.data_ptr(),
           out.data_ptr(), b, hk, g, d, k_cache.shape[2], block_tables.shape[1], block_size, threads)


def paged_prefill(lib, qs: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                  query_lens: list[int], seq_lens: list[int], out: torch.Tensor, block_size: int, threads: int) -> None:
    """Causal attention of every prefill token over its sequence's context, in one call: sequence i
    owns the next query_lens[i] rows of qs / out, at positions seq_lens[i] - query_lens[i] .. seq_lens[i] - 1,
    and its block table is row i of block_tables. qs, out [T, Hk, G, D] (qs pre-scaled); caches as in
    paged_decode, with the new tokens' K/V already written."""
    t, hk, g, d = qs.shape
    for x in (qs, k_cache, v_cache, block_tables, out):
        assert x.is_contiguous() and x.device.type == "cpu"
    assert block_tables.dtype == torch.int32 and sum(query_lens) == t
    assert qs.dtype == out.dtype == torch.float32 and k_cache.dtype == v_cache.dtype
    seq_of = np.repeat(np.arange(len(query_lens), dtype=np.int32), query_lens)
    pos = np.concatenate([np.arange(n - q, n, dtype=np.int64) for q, n in zip(query_lens, seq_lens)])
    kernel = getattr(lib, f"nbinfer_paged_prefill_{_SUFFIX[k_cache.dtype]}")
    kernel(qs.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), block_tables.data_ptr(), seq_of.ctypes.data,
           pos.ctypes.data, out.data_ptr(), t, hk, g, d, k_cache.shape[2], block_tables.shape[1], block_size, threads)
