"""Paged attention: the metadata a step carries and the plain-torch backend.

KV cache layout, per layer: k_cache, v_cache [num_blocks, block_size, num_kv_heads, head_dim].
Token t of a sequence lives in block block_table[t // block_size] at offset t % block_size, i.e. at
slot block * block_size + offset of the flattened cache.

A step's tokens are packed: sequence i owns q[query_start_loc[i]:query_start_loc[i+1]] and attends
causally to the first seq_lens[i] tokens of its context (cached prefix + the new tokens). The first
num_decodes sequences have exactly one new token, so backends can batch them.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AttentionMetadata:
    slot_mapping: torch.Tensor       # [T] int64: cache slot of each new token
    query_start_loc: torch.Tensor    # [B + 1] int32
    seq_lens: torch.Tensor           # [B] int32: context length after this step
    block_tables: torch.Tensor       # [B, max_blocks] int32, padded with 0
    num_decodes: int                 # leading sequences with one new token
    max_query_len: int
    max_seq_len: int
    query_lens_cpu: list[int]
    seq_lens_cpu: list[int]
    block_tables_cpu: list[list[int]] | None = None   # the same tables as lists (host backends)
    _runs: list | None = None

    @property
    def num_seqs(self) -> int:
        return len(self.seq_lens_cpu)

    def block_runs(self, i: int, block_size: int) -> list[tuple[int, int]]:
        """Sequence i's context blocks as (first block, count) runs of consecutive ids (computed
        once a step, used by every layer)."""
        if self._runs is None:
            self._runs = [None] * self.num_seqs
        if self._runs[i] is None:
            needed = -(-self.seq_lens_cpu[i] // block_size)
            self._runs[i] = consecutive_runs(self.block_tables_cpu[i][:needed])
        return self._runs[i]

    def context_pieces(self, i: int, block_size: int) -> list[tuple[int, int]] | None:
        """Sequence i's context as (first slot, length) pieces of consecutive slots, for a host
        backend to read as views; None where it should gather a copy instead (no host tables, or
        the context lies in more than MAX_RUNS pieces)."""
        if self.block_tables_cpu is None:
            return None
        runs = self.block_runs(i, block_size)
        if len(runs) > MAX_RUNS:
            return None
        pieces, left = [], self.seq_lens_cpu[i]
        for first, count in runs:
            take = min(count * block_size, left)
            pieces.append((first * block_size, take))
            left -= take
        return pieces


MAX_RUNS = 4    # a context in more pieces than this is gathered into one copy instead


def consecutive_runs(blocks: list[int]) -> list[tuple[int, int]]:
    runs = []
    start = prev = blocks[0]
    for b in blocks[1:]:
        if b != prev + 1:
            runs.append((start, prev - start + 1))
            start = b
        prev = b
    runs.append((start, prev - start + 1))
    return runs


def write_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
             slot_mapping: torch.Tensor) -> None:
    k_cache.view(-1, *k_cache.shape[2:]).index_copy_(0, slot_mapping, k)
    v_cache.view(-1, *v_cache.shape[2:]).index_copy_(0, slot_mapping, v)


def gather_kv(cache: torch.Tensor, block_table: torch.Tensor, length: int) -> torch.Tensor:
    """[length, H, D]: the first `length` tokens of one sequence's context."""
    nblocks = -(-length // cache.shape[1])
    return cache[block_table[:nblocks]].flatten(0, 1)[:length]


class NHDLayout:
    """The cache layout of the torch and Triton backends: per layer, K and V each
    [num_blocks, block_size, num_kv_heads, head_dim] (token-major, as vLLM's). A backend owns its
    layout: the model runner allocates, slices and copies the cache only through these methods."""

    wants_contiguous_blocks = False     # True: the block pool should place a sequence's blocks in runs

    @staticmethod
    def cache_shape(num_layers: int, num_blocks: int, block_size: int, num_kv_heads: int,
                    head_dim: int) -> tuple[int, ...]:
        return (num_layers, 2, num_blocks, block_size, num_kv_heads, head_dim)

    @staticmethod
    def layer_kv(kv_cache: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        return kv_cache[layer, 0], kv_cache[layer, 1]

    @staticmethod
    def copy_blocks(kv_cache: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> None:
        kv_cache[:, :, dst] = kv_cache[:, :, src]


class TorchAttention(NHDLayout):
    """Reference backend: SDPA over gathered KV. Decodes are batched, prefills run one by one."""

    name = "torch"
    wants_contiguous_blocks = True      # decode reads a context's runs of consecutive blocks as views

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor,
                v_cache: torch.Tensor, meta: AttentionMetadata, scale: float) -> torch.Tensor:
        write_kv(k, v, k_cache, v_cache, meta.slot_mapping)
        out = torch.empty_like(q)
        nd = meta.num_decodes
        if nd:
            out[:nd] = self._decode(q[:nd], k_cache, v_cache, meta, scale)
        pos = nd
        for i in range(nd, meta.num_seqs):
            qlen, ctx = meta.query_lens_cpu[i], meta.seq_lens_cpu[i]
            qi = q[pos:pos + qlen]
            if ctx == qlen:    # nothing cached before this chunk: attend to the new tokens only
                ki, vi = k[pos:pos + qlen], v[pos:pos + qlen]
            else:
                ki = gather_kv(k_cache, meta.block_tables[i], ctx)
                vi = gather_kv(v_cache, meta.block_tables[i], ctx)
            out[pos:pos + qlen] = _causal_sdpa(qi, ki, vi, scale)
            pos += qlen
        return out

    @staticmethod
    def _decode(q, k_cache, v_cache, meta, scale):
        """One query token per sequence, looped: gathering each context at its own length wastes
        nothing on padding, and GQA groups become matmul rows ([Hk, G, D] @ [Hk, D, L]) instead of
        repeated K/V. On a CPU this beats one padded, masked batch by 1.1-2x (ragged lengths)."""
        nd, hq, d = q.shape
        bs, hk = k_cache.shape[1], k_cache.shape[2]
        out = torch.empty_like(q)
        with _small_ops(q.device):
            for i in range(nd):
                _decode_one(i, q, k_cache, v_cache, meta, scale, out, bs, hk, hq, d)
        return out


def _decode_one(i, q, k_cache, v_cache, meta, scale, out, bs, hk, hq, d):
    """Attention of sequence i's one new token over its context, read in place where the context
    sits in a few runs of consecutive blocks (views, no copy), else gathered."""
    n = meta.seq_lens_cpu[i]
    qh = q[i].view(hk, hq // hk, d)
    pieces = meta.context_pieces(i, bs)
    if pieces is None:
        blocks = meta.block_tables[i, :-(-n // bs)]
        ks = [k_cache.index_select(0, blocks).flatten(0, 1)[:n]]      # [n, Hk, D]
        vs = [v_cache.index_select(0, blocks).flatten(0, 1)[:n]]
    else:
        slots_k, slots_v = k_cache.flatten(0, 1), v_cache.flatten(0, 1)   # [S, Hk, D]
        ks = [slots_k[a:a + take] for a, take in pieces]
        vs = [slots_v[a:a + take] for a, take in pieces]
    # GQA: a KV head's G query heads are matmul rows, [Hk, G, D] @ [Hk, D, n]
    scores = [torch.matmul(qh, k.permute(1, 2, 0)) for k in ks]
    scores = scores[0] if len(scores) == 1 else torch.cat(scores, dim=-1)
    probs = (scores.float() * scale).softmax(dim=-1).to(q.dtype)
    if len(vs) == 1:
        o = torch.matmul(probs, vs[0].transpose(0, 1))
    else:
        o, at = 0, 0
        for v in vs:
            o = o + torch.matmul(probs[..., at:at + v.shape[0]], v.transpose(0, 1))
            at += v.shape[0]
    out[i] = o.reshape(hq, d)


@contextmanager
def _small_ops(device: torch.device):
    """Run a loop of small CPU ops on one intra-op thread. Each OpenMP region entered from a thread
    other than the main one (the engine thread) costs ~50 us of hand-off (measured on 2 cores), which
    for per-sequence ops of a few microseconds of work is the whole cost; splitting them gains nothing."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _causal_sdpa(q, k, v, scale):
    """q [Lq, Hq, D] are the last Lq positions of a context k/v [Lk, Hk, D]."""
    lq, lk = q.shape[0], k.shape[0]
    hq, hk = q.shape[1], k.shape[1]
    qt, kt, vt = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    if lq == lk:
        o = F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, scale=scale, enable_gqa=hq != hk)
    else:
        rows = torch.arange(lk - lq, lk, device=q.device)[:, None]
        mask = torch.arange(lk, device=q.device)[None, :] <= rows
        o = F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale, enable_gqa=hq != hk)
    return o.transpose(0, 1)


def make_backend(name: str, device: torch.device, block_size: int):
    """'auto' picks triton on CUDA, cpu elsewhere."""
    if name == "auto":
        name = "triton" if device.type == "cuda" else "cpu"
    if name == "torch":
        return TorchAttention()
    if name == "cpu":
        if device.type != "cpu":
            raise ValueError(f"attention_backend='cpu' needs the CPU, but the engine runs on {device}")
        from .cpu_attention import CpuAttention
        return CpuAttention(block_size)
    if name == "triton":
        try:
            from nbinfer.kernels.attention_backend import TritonAttention
        except ImportError as e:
            raise ValueError(f"attention_backend='triton' needs the triton package ({e})") from e
        return TritonAttention(device)
    raise ValueError(f"attention_backend must be 'auto', 'cpu', 'torch' or 'triton', got {name!r}")
