"""The CPU decode step (cpu/llama_decode.cpp): a step of a few decode tokens through the whole model to
logits in one C++ call, for fp32 Llama-family models on the CPU backend's KV layout.

The engine takes it for decode-only steps of at most MAX_BATCH sequences, where a step is bound by
reading the weights once: one call runs every layer on the library's thread pool, with no per-op
dispatch and no OpenMP hand-off from the engine's thread. Larger steps (prefill, wide decode batches)
are bound by arithmetic and stay on torch's GEMMs (nbinfer/models/llama.py, also this step's reference).
"""
from __future__ import annotations

import ctypes

import numpy as np
import torch

from . import cpu_build

MAX_BATCH = 8        # decode steps up to this many sequences are memory-bound: this step's regime
_PTR = ctypes.c_void_p


def _library():
    lib = cpu_build.library()
    if lib is not None and not getattr(lib, "_llama_ready", False):
        lib.nbinfer_llama_new.restype = _PTR
        lib.nbinfer_llama_new.argtypes = [_PTR, ctypes.c_float, _PTR]
        lib.nbinfer_llama_free.argtypes = [_PTR]
        lib.nbinfer_llama_free.restype = None
        lib.nbinfer_llama_max_layers.restype = ctypes.c_int
        lib.nbinfer_llama_decode.restype = None
        lib.nbinfer_llama_decode.argtypes = ([_PTR, ctypes.c_int, _PTR, _PTR, _PTR, ctypes.c_int64, _PTR, ctypes.c_int,
                                              _PTR, ctypes.c_int, _PTR, _PTR, ctypes.c_float, _PTR, ctypes.c_int])
        lib._llama_ready = True
    return lib


class LlamaDecodeStep:
    """Holds the weights' addresses (and references, so they outlive it) and runs decode steps."""

    def __init__(self, lib, cfg, weights: list[torch.Tensor | None], kv_cache: torch.Tensor, block_size: int,
                 cos: torch.Tensor, sin: torch.Tensor, threads: int):
        for w in weights:
            assert w is None or (w.dtype == torch.float32 and w.is_contiguous() and w.device.type == "cpu")
        assert kv_cache.is_contiguous() and cos.is_contiguous() and sin.is_contiguous()
        self.lib, self.threads, self.block_size = lib, threads, block_size
        self.vocab, self.scale = cfg.vocab_size, cfg.head_dim ** -0.5
        self.kv_cache, self.cos, self.sin, self._weights = kv_cache, cos, sin, weights
        self.slots = kv_cache.shape[-1]
        dims = np.array([cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads,
                         cfg.head_dim, cfg.vocab_size], dtype=np.int32)
        ptrs = (_PTR * len(weights))(*[None if w is None else w.data_ptr() for w in weights])
        self._handle = lib.nbinfer_llama_new(dims.ctypes.data, cfg.rms_norm_eps, ptrs)

    def takes(self, query_lens: list[int], num_sampled: int, num_prompt_rows: int) -> bool:
        """A step of decode tokens only (one new token per sequence, each sampled), few enough."""
        n = len(query_lens)
        return 0 < n <= MAX_BATCH and num_sampled == n and not num_prompt_rows and max(query_lens) == 1

    def __call__(self, ids: list[int], positions, seq_lens: list[int], tables: list[list[int]]) -> torch.Tensor:
        """Logits [B, V] fp32 for one new token per sequence; writes their K/V into the cache."""
        b = len(ids)
        width = max(map(len, tables))
        table = np.zeros((b, width), dtype=np.int32)
        for i, t in enumerate(tables):
            table[i, :len(t)] = t
        ids_np = np.asarray(ids, dtype=np.int64)
        pos_np = np.ascontiguousarray(positions, dtype=np.int64)
        lens_np = np.asarray(seq_lens, dtype=np.int32)
        logits = torch.empty(b, self.vocab, dtype=torch.float32)
        self.lib.nbinfer_llama_decode(self._handle, b, ids_np.ctypes.data, pos_np.ctypes.data, self.kv_cache.data_ptr(),
                                      self.slots, table.ctypes.data, width, lens_np.ctypes.data, self.block_size,
                                      self.cos.data_ptr(), self.sin.data_ptr(), self.scale, logits.data_ptr(),
                                      self.threads)
        return logits

    def close(self) -> None:
        if self._handle:
            self.lib.nbinfer_llama_free(self._handle)
            self._handle = None
            self._weights = self.kv_cache = None

    def __del__(self):
        self.close()


def build(model, backend, kv_cache: torch.Tensor, block_size: int, cos: torch.Tensor, sin: torch.Tensor,
          threads: int) -> LlamaDecodeStep | None:
    """The step for this model, or None where it does not apply (then every step runs in torch):
    it needs the CPU attention backend's cache layout, fp32, head_dim a multiple of 16, the library."""
    cfg = model.cfg
    if (getattr(backend, "name", None) != "cpu" or getattr(backend, "kernel", None) is None
            or kv_cache.dtype != torch.float32 or kv_cache.device.type != "cpu" or cfg.head_dim % 16
            or cfg.num_heads % cfg.num_kv_heads):
        return None
    lib = _library()
    if lib is None or cfg.num_layers > lib.nbinfer_llama_max_layers():
        return None
    return LlamaDecodeStep(lib, cfg, model.decode_step_weights(), kv_cache, block_size, cos, sin, threads)
