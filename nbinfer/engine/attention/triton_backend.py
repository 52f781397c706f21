"""TritonAttention: the backend built from the Triton kernels (nbinfer.kernels), over the NHD cache.

A step writes its new K/V into the paged cache with a kernel, then the leading decode sequences go
through the split-KV decode kernel and the rest (prefill chunks, with or without a cached prefix)
through one extend kernel launch, each writing its rows of one output tensor. The decode path reads
only device tensors and launch constants derived from meta.max_seq_len, so a CUDA graph captured with
max_seq_len = max_model_len replays correctly for any shorter contexts.
"""
from __future__ import annotations

import torch

from ...kernels import decode_attention
from ...kernels._common import interpreted
from ...kernels.decode_attention import num_kv_splits, paged_decode_attention
from ...kernels.extend_attention import paged_extend_attention
from ...kernels.kv_write import kv_write
from .metadata import AttentionMetadata
from .nhd_layout import NHDLayout

_CPU_SM_COUNT = 4     # the interpreter has no SMs; a small number still exercises split-KV in tests


def runs_on(device: torch.device) -> None:
    """Raises ValueError unless the kernels can run on `device`: CUDA, or any device under Triton's interpreter."""
    if device.type != "cuda" and not interpreted(decode_attention._decode_kernel):
        raise ValueError(f"attention_backend='triton' needs a CUDA device, but the engine runs on {device}; "
                         "use attention_backend='auto' (the C++ 'cpu' backend here) or 'torch' "
                         "(or set TRITON_INTERPRET=1 to test the kernels on a CPU)")


class TritonAttention(NHDLayout):
    name = "triton"
    supports_cuda_graphs = True

    def __init__(self, device: torch.device | None = None):
        if device is not None:
            runs_on(device)
        self._sm_count: dict[torch.device, int] = {}

    def sm_count(self, device: torch.device) -> int:
        if device not in self._sm_count:
            self._sm_count[device] = (torch.cuda.get_device_properties(device).multi_processor_count
                                      if device.type == "cuda" else _CPU_SM_COUNT)
        return self._sm_count[device]

    def forward(self, q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float) -> torch.Tensor:
        # the kernels read q rows with unit stride in the head dimension
        return super().forward(q if q.stride(-1) == 1 else q.contiguous(), k, v, k_cache, v_cache, meta, scale)

    def write_kv(self, k, v, k_cache, v_cache, slot_mapping) -> None:
        kv_write(k, v, k_cache, v_cache, slot_mapping)

    def decode(self, q, k_cache, v_cache, meta: AttentionMetadata, scale: float, out) -> None:
        nd = q.shape[0]
        splits = num_kv_splits(nd, k_cache.shape[2], meta.max_seq_len, self.sm_count(q.device))
        paged_decode_attention(q, k_cache, v_cache, meta.block_tables[:nd], meta.seq_lens[:nd],
                               scale, out=out, num_splits=splits)

    def prefill(self, q, k, v, k_cache, v_cache, meta: AttentionMetadata, scale: float, out) -> None:
        paged_extend_attention(q, k_cache, v_cache, meta.block_tables, meta.seq_lens, meta.query_start_loc,
                               scale, meta.max_query_len, out=out, first_seq=meta.num_decodes)
