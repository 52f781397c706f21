"""CUDA graphs for decode steps: one graph per batch-size bucket, replayed over persistent inputs.

A decode step of a small batch is bound by kernel launches (a few hundred per step, each costing
microseconds of CPU time) rather than by the GPU. Capturing the model forward once per bucket and
replaying it turns a step into one launch.

A graph bakes in pointers, not values, so everything the forward reads lives in persistent device
buffers: token ids, positions, slot mapping, context lengths, block tables. A step writes its n rows
and pads the rest of its bucket with inert rows: token 0 at position 0, context length 1, and block
table and slot pointing at a scratch KV block the block pool never hands out. Without that, a pad row
left over from a bigger earlier batch would write its stale slot -- someone else's KV. Pad rows'
outputs are dropped.

A bucket's attention metadata says max_seq_len = max_model_len, so the backend fixes launch constants
(the number of KV splits) that are valid for any context length; the lengths themselves are read on
the device. Only backends whose decode path reads nothing from the host lists in the metadata may
be captured (AttentionBackend.supports_cuda_graphs): the Triton backend qualifies, the torch
reference backend does not.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

from .attention import AttentionMetadata

log = logging.getLogger("nbinfer")

MAX_CAPTURED_BATCH = 256      # bigger decode batches amortise their launches; they run eagerly


def batch_buckets(max_batch_size: int) -> list[int]:
    """1, 2, 4, 8, then every 16 up to max_batch_size (which is always a bucket)."""
    top = min(max_batch_size, MAX_CAPTURED_BATCH)
    sizes = [b for b in (1, 2, 4, 8) if b < top] + list(range(16, top, 16))
    return sizes + [top]


class DecodeGraphs:
    """Decode forward passes over persistent inputs, captured as CUDA graphs (or run eagerly when
    capture=False, which is how the padding logic is tested without a GPU)."""

    def __init__(self, model: torch.nn.Module, make_context: Callable, cos: torch.Tensor, sin: torch.Tensor, *,
                 block_size: int, max_model_len: int, max_batch_size: int, scratch_block: int,
                 device: torch.device):
        self.model, self.make_context = model, make_context
        self.cos_table, self.sin_table = cos, sin
        self.block_size, self.max_model_len = block_size, max_model_len
        self.scratch_block = scratch_block
        self.device = device
        self.buckets = batch_buckets(max_batch_size)
        self.width = -(-max_model_len // block_size)
        top = self.buckets[-1]
        i64, i32 = dict(dtype=torch.int64, device=device), dict(dtype=torch.int32, device=device)
        self.input_ids = torch.zeros(top, **i64)
        self.positions = torch.zeros(top, **i64)
        self.slot_mapping = torch.full((top,), scratch_block * block_size, **i64)
        self.seq_lens = torch.ones(top, **i32)
        self.block_tables = torch.full((top, self.width), scratch_block, **i32)
        self.query_start_loc = torch.arange(top + 1, **i32)     # one token per sequence, always
        pin = device.type == "cuda"
        self._host = {name: torch.empty(buf.shape, dtype=buf.dtype, pin_memory=pin) for name, buf in
                      (("ids", self.input_ids), ("pos", self.positions), ("slots", self.slot_mapping),
                       ("lens", self.seq_lens), ("tables", self.block_tables))}
        self._copied = torch.cuda.Event() if device.type == "cuda" else None
        self._meta = {bs: self._static_metadata(bs) for bs in self.buckets}
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.outputs: dict[int, torch.Tensor] = {}

    def _static_metadata(self, bs: int) -> AttentionMetadata:
        return AttentionMetadata(
            slot_mapping=self.slot_mapping[:bs], query_start_loc=self.query_start_loc[:bs + 1],
            seq_lens=self.seq_lens[:bs], block_tables=self.block_tables[:bs],
            num_decodes=bs, max_query_len=1, max_seq_len=self.max_model_len,
            query_lens_cpu=[1] * bs, seq_lens_cpu=[self.max_model_len] * bs)

    def forward_static(self, bs: int) -> torch.Tensor:
        """The forward a graph captures: reads only the persistent buffers' first bs rows."""
        pos = self.positions[:bs]
        ctx = self.make_context(self._meta[bs], self.cos_table[pos], self.sin_table[pos])
        return self.model(self.input_ids[:bs], ctx)

    @torch.inference_mode()
    def capture(self) -> None:
        """Capture every bucket, largest first, all sharing one memory pool. The buffers hold pad rows
        meanwhile, so warm-up and capture write only the scratch block."""
        pool = torch.cuda.graph_pool_handle()
        for bs in reversed(self.buckets):
            self.forward_static(bs)                 # compiles the Triton kernels outside the capture
            torch.cuda.synchronize(self.device)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                self.outputs[bs] = self.forward_static(bs)
            self.graphs[bs] = graph
        torch.cuda.synchronize(self.device)

    def bucket_for(self, n: int) -> int | None:
        for bs in self.buckets:
            if bs >= n:
                return bs
        return None

    def run(self, ids: list[int], positions: np.ndarray, query_lens: list[int], seq_lens: list[int],
            tables: list[list[int]]) -> torch.Tensor | None:
        """Hidden states [n, hidden] of a decode-only step, or None when this step is not one the
        graphs cover (a prefill chunk in it, too many sequences, a table wider than max_model_len)."""
        n = len(query_lens)
        if sum(query_lens) != n:
            return None
        bs = self.bucket_for(n)
        if bs is None or max(len(t) for t in tables) > self.width:
            return None
        self._stage(bs, ids, positions, seq_lens, tables)
        if bs in self.graphs:
            self.graphs[bs].replay()
            return self.outputs[bs][:n]
        return self.forward_static(bs)[:n]

    def _stage(self, bs: int, ids, positions: np.ndarray, seq_lens, tables) -> None:
        """Write the step's rows and pad rows to the persistent buffers (one host->device copy each)."""
        if self._copied is not None:
            self._copied.synchronize()              # the previous step's copies have left the pinned buffers
        n, scratch, page = len(ids), self.scratch_block, self.block_size
        h = {k: v.numpy() for k, v in self._host.items()}
        w = max(len(t) for t in tables)
        h["ids"][:bs] = 0
        h["ids"][:n] = ids
        h["pos"][:bs] = 0
        h["pos"][:n] = positions
        h["lens"][:bs] = 1
        h["lens"][:n] = seq_lens
        tab = h["tables"][:bs, :w]
        tab[:] = scratch
        for i, t in enumerate(tables):
            tab[i, :len(t)] = t
        h["slots"][:bs] = scratch * page
        pos = np.asarray(positions, dtype=np.int64)
        h["slots"][:n] = tab[np.arange(n), pos // page].astype(np.int64) * page + pos % page
        for name, buf in (("ids", self.input_ids), ("pos", self.positions), ("slots", self.slot_mapping),
                          ("lens", self.seq_lens)):
            buf[:bs].copy_(self._host[name][:bs], non_blocking=True)
        self.block_tables[:bs, :w].copy_(self._host["tables"][:bs, :w], non_blocking=True)
        if self._copied is not None:
            self._copied.record()


def supports_graphs(device: torch.device, enforce_eager: bool, backend) -> bool:
    """Graphs need CUDA, a backend whose decode path reads only device tensors, and not enforce_eager."""
    return device.type == "cuda" and not enforce_eager and backend.supports_cuda_graphs


def build_decode_graphs(model, make_context, cos, sin, *, block_size: int, max_model_len: int,
                        max_batch_size: int, scratch_block: int, device: torch.device) -> DecodeGraphs | None:
    """Capture the decode graphs; on failure (e.g. out of memory) log why and run eagerly instead."""
    graphs = DecodeGraphs(model, make_context, cos, sin, block_size=block_size, max_model_len=max_model_len,
                          max_batch_size=max_batch_size, scratch_block=scratch_block, device=device)
    try:
        graphs.capture()
    except Exception as e:      # out of memory, an uncapturable op: eager steps still work
        log.warning("CUDA graph capture failed (%s); decode steps run eagerly", e)
        del graphs
        torch.cuda.empty_cache()
        return None
    log.info("captured CUDA graphs for decode batch sizes %s", graphs.buckets)
    return graphs
