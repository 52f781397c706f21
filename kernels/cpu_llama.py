"""The CPU step (cpu/llama_step.cpp): every step (decode tokens, prefill chunks, both mixed) through
the whole model to logits in one C++ call, for Llama-family models with fp32 or bf16 weights (or int8
matrices: nbinfer/models/quantize.py) on the CPU backend's KV layout (of the model's dtype).

Small steps are where torch pays most for being called op by op from the engine's thread: one token's
step is bound by reading the weights once, a few dozen tokens' by arithmetic on weights read once;
either way one call on the library's thread pool, with no per-op dispatch and no OpenMP hand-off,
does it. Long prefill chunks run here too: measured against torch's GEMMs (MKL) on every thread, a
32-prompt batch of SmolLM2-135M took 46.7 s instead of 51.3 s, a 2048-token prefill of the
Qwen2.5-0.5B shape 15.4-16.0 s instead of 18.0-18.9 s. The torch forward (nbinfer/models/llama.py)
stays the reference, and runs where this step does not apply.
"""
from __future__ import annotations

import ctypes
import logging
import os

import numpy as np
import torch

from . import cpu_build

_PTR = ctypes.c_void_p
_DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.int8: 2}   # the C++ step's DType codes (cpu/llama_step.cpp)
Int8 = dict[int, tuple[torch.Tensor, torch.Tensor]]     # quantize.quantize_int8's: data_ptr -> (q, row scales)


def _library():
    lib = cpu_build.library()
    if lib is not None and not getattr(lib, "_llama_ready", False):
        lib.nbinfer_llama_new.restype = _PTR
        lib.nbinfer_llama_new.argtypes = [_PTR, ctypes.c_float, _PTR, _PTR, ctypes.c_int, ctypes.c_int]
        lib.nbinfer_llama_free.argtypes = [_PTR]
        lib.nbinfer_llama_free.restype = None
        lib.nbinfer_llama_max_layers.restype = ctypes.c_int
        lib.nbinfer_panel_width.restype = ctypes.c_int
        lib.nbinfer_llama_step.restype = None
        lib.nbinfer_llama_step.argtypes = ([_PTR, ctypes.c_int, _PTR, _PTR, _PTR, _PTR, ctypes.c_int64, _PTR,
                                            ctypes.c_int, ctypes.c_int, _PTR, _PTR, ctypes.c_float, ctypes.c_int, _PTR,
                                            _PTR, ctypes.c_int])
        lib._llama_ready = True
    return lib


def panels(w: torch.Tensor, width: int) -> torch.Tensor:
    """[N, K] -> [ceil(N / width), K, width]: out[p, k, i] = w[p * width + i, k], rows past N zero
    (the layout the C++ step's matrix products read, cpu/matmul.h)."""
    n, k = w.shape
    if n % width:
        w = torch.cat([w, w.new_zeros(-n % width, k)])
    return w.view(-1, width, k).transpose(1, 2).contiguous()


def _is_matrix(i: int, w: torch.Tensor | None) -> bool:
    return w is not None and w.dim() == 2 and i != 0        # index 0: the embedding, looked up by row


def packed_weights(weights: list[torch.Tensor | None], intermediate: int, width: int,
                   int8: Int8 | None = None) -> list[torch.Tensor | None]:
    """cpu_step_weights() as the C++ step reads them: the LM head and each layer's matrices in panels
    (gate_up as gate's panels, then up's, each padded on its own; their int8 values where int8 has
    them), the embedding as it is, the vectors (norms, biases) as fp32 copies of a few KB."""
    out = []
    for i, w in enumerate(weights):
        if not _is_matrix(i, w):
            out.append(None if w is None else w if w.dim() == 2 else w.float().contiguous())
            continue
        if int8:
            w = int8[w.data_ptr()][0]
        if (i - 3) % 12 == 8:           # gate_up [2I, H]
            out.append(torch.cat([panels(w[:intermediate], width), panels(w[intermediate:], width)]))
        else:
            out.append(panels(w, width))
    return out


def _available_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


class LlamaStep:
    """Holds the packed weights (and references to the rest, so they outlive it) and runs steps."""

    def __init__(self, lib, cfg, weights: list[torch.Tensor | None], kv_cache: torch.Tensor, block_size: int,
                 cos: torch.Tensor, sin: torch.Tensor, threads: int, int8: Int8 | None = None):
        matrix = [_is_matrix(i, w) for i, w in enumerate(weights)]
        scales = [int8[w.data_ptr()][1] if int8 and m else None for w, m in zip(weights, matrix)]
        weights = packed_weights(weights, cfg.intermediate_size, lib.nbinfer_panel_width(), int8)
        wtype = torch.int8 if int8 else kv_cache.dtype
        for i, (w, m) in enumerate(zip(weights, matrix)):
            assert w is None or (w.is_contiguous() and w.device.type == "cpu" and w.dtype == (
                wtype if m else kv_cache.dtype if i == 0 else torch.float32))
        assert kv_cache.is_contiguous() and cos.is_contiguous() and sin.is_contiguous()
        assert cos.dtype == sin.dtype == torch.float32
        self.lib, self.threads, self.block_size = lib, threads, block_size
        self.vocab, self.scale = cfg.vocab_size, cfg.head_dim ** -0.5
        self.kv_cache, self.cos, self.sin, self._weights = kv_cache, cos, sin, weights + scales
        self.quantized = bool(int8)
        self.slots = kv_cache.shape[-1]
        dims = np.array([cfg.num_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads,
                         cfg.head_dim, cfg.vocab_size], dtype=np.int32)
        ptrs = (_PTR * len(weights))(*[None if w is None else w.data_ptr() for w in weights])
        sptrs = (_PTR * len(scales))(*[None if s is None else s.data_ptr() for s in scales])
        self._handle = lib.nbinfer_llama_new(dims.ctypes.data, cfg.rms_norm_eps, ptrs, sptrs, _DTYPES[wtype],
                                             _DTYPES[kv_cache.dtype])

    def __call__(self, ids: list[int], positions: list[int], query_lens: list[int], tables: list[list[int]],
                 rows: list[int]) -> torch.Tensor | None:
        """Runs the packed tokens (sequence i owns the next query_lens[i] of them, at `positions`),
        writes their K/V into the cache, and returns the logits [len(rows), V] of the token rows asked."""
        width = max(map(len, tables))
        table = np.zeros((len(tables), width), dtype=np.int32)
        for i, t in enumerate(tables):
            table[i, :len(t)] = t
        ids_np = np.asarray(ids, dtype=np.int64)
        pos_np = np.asarray(positions, dtype=np.int64)
        seq_of = np.repeat(np.arange(len(query_lens), dtype=np.int32), query_lens)
        rows_np = np.asarray(rows, dtype=np.int32)
        logits = torch.empty(len(rows), self.vocab, dtype=torch.float32)
        self.lib.nbinfer_llama_step(self._handle, len(ids), ids_np.ctypes.data, pos_np.ctypes.data, seq_of.ctypes.data,
                                    self.kv_cache.data_ptr(), self.slots, table.ctypes.data, width, self.block_size,
                                    self.cos.data_ptr(), self.sin.data_ptr(), self.scale, len(rows), rows_np.ctypes.data,
                                    logits.data_ptr(), self.threads)
        return logits if rows else None

    def close(self) -> None:
        if self._handle:
            self.lib.nbinfer_llama_free(self._handle)
            self._handle = None
            self._weights = self.kv_cache = None

    def __del__(self):
        self.close()


def build(model, backend, kv_cache: torch.Tensor, block_size: int, cos: torch.Tensor, sin: torch.Tensor,
          threads: int, int8: Int8 | None = None) -> LlamaStep | None:
    """The step for this model, or None where it does not apply (then every step runs in torch):
    it needs the CPU attention backend's cache layout, fp32 or bf16, head_dim a multiple of 16 (and <= 1024),
    the library, and free memory for the packed matrices."""
    cfg = model.cfg
    if (getattr(backend, "name", None) != "cpu" or getattr(backend, "kernel", None) is None
            or kv_cache.dtype not in (torch.float32, torch.bfloat16) or kv_cache.device.type != "cpu" or cfg.head_dim % 16 or cfg.head_dim > 1024
            or cfg.num_heads % cfg.num_kv_heads):
        return None
    lib = _library()
    if lib is None or cfg.num_layers > lib.nbinfer_llama_max_layers():
        return None
    # the packed copy doubles the matrices' memory: where that would not leave room, torch runs every step
    weights = model.cpu_step_weights()
    matrices = sum(w.numel() * (1 if int8 else w.element_size()) for i, w in enumerate(weights) if _is_matrix(i, w))
    if matrices > _available_bytes() // 2:
        logging.getLogger("nbinfer").warning(
            "not enough free memory for the CPU step's packed weights (%.1f GB); running every step in torch",
            matrices / 1e9)
        return None
    return LlamaStep(lib, cfg, weights, kv_cache, block_size, cos, sin, threads, int8)
