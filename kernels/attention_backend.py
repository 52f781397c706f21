"""TritonAttention: the engine's attention backend built from the Triton kernels.

Same interface as nbinfer.engine.attention.TorchAttention. A step writes its new K/V into the paged
cache, then the leading decode sequences go through the split-KV decode kernel and the rest (prefill
chunks, with or without a cached prefix) through the extend kernel, each writing its rows of one
output tensor. The decode path reads only device tensors and launch constants derived from
meta.max_seq_len, so a CUDA graph captured with max_seq_len = max_model_len replays correctly for
any shorter contexts.
"""
from __future__ import annotations

import torch

from nbinfer.engine.attention import NHDLayout

from . import decode_attention
from ._common import interpreted
from .decode_attention import num_kv_splits, paged_decode_attention
from .extend_attention import paged_extend_attention
from .kv_write import kv_write

_CPU_SM_COUNT = 4     # the interpreter has no SMs; a small number still exercises split-KV in tests


class TritonAttention(NHDLayout):
    name = "triton"

    def __init__(self, device: torch.device | None = None):
        if device is not None and device.type != "cuda" and not interpreted(decode_attention._decode_kernel):
            raise ValueError(f"attention_backend='triton' needs a CUDA device, but the engine runs on {device}; "
                             "use attention_backend='auto' or 'torch' (or set TRITON_INTERPRET=1 to test on CPU)")
        self._sm_count: dict[torch.device, int] = {}

    def sm_count(self, device: torch.device) -> int:
        if device not in self._sm_count:
            self._sm_count[device] = (torch.cuda.get_device_properties(device).multi_processor_count
                                      if device.type == "cuda" else _CPU_SM_COUNT)
        return self._sm_count[device]

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor, meta, scale: float) -> torch.Tensor:
        kv_write(k, v, k_cache, v_cache, meta.slot_mapping)
        q = q if q.stride(-1) == 1 else q.contiguous()
        out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        nd = meta.num_decodes
        if nd:
            splits = num_kv_splits(nd, k_cache.shape[2], meta.max_seq_len, self.sm_count(q.device))
            paged_decode_attention(q[:nd], k_cache, v_cache, meta.block_tables[:nd], meta.seq_lens[:nd],
                                   scale, out=out[:nd], num_splits=splits)
        if meta.num_seqs > nd:
            paged_extend_attention(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, meta.query_start_loc,
                                   scale, meta.max_query_len, out=out, first_seq=nd)
        return out
