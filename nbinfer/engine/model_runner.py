"""Model runner: owns the weights and the paged KV cache on the device, turns a Batch into logits."""
from __future__ import annotations

import gc
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from ..kernels import cpu_llama
from ..models.loader import build_model, init_dummy_weights, load_weights
from ..models.quantize import quantize_int8
from ..models.rope import cos_sin_table
from .attention import AttentionMetadata, make_backend
from .cpu_threads import ThreadTuner
from .cuda_graph import build_decode_graphs, supports_graphs
from .resolved import ResolvedConfig
from .scheduler import Batch

log = logging.getLogger("nbinfer")


class ForwardContext:
    """What one forward pass needs besides the tokens: KV cache, attention backend, RoPE rows."""

    __slots__ = ("meta", "kv_cache", "backend", "cos", "sin")

    def __init__(self, meta, kv_cache, backend, cos, sin):
        self.meta, self.kv_cache, self.backend, self.cos, self.sin = meta, kv_cache, backend, cos, sin

    def attention(self, layer: int, q, k, v, scale: float) -> torch.Tensor:
        return self.backend.forward(q, k, v, *self.backend.layer_kv(self.kv_cache, layer), self.meta, scale)


@dataclass
class PromptLogitsSpan:
    request: object
    first_pos: int           # logits row j predicts prompt token first_pos + j + 1
    rows: slice              # rows of StepOutput.prompt_logits


@dataclass
class StepOutput:
    sample_logits: torch.Tensor | None            # [S, V] fp32, one row per sampled item, batch order
    prompt_logits: torch.Tensor | None            # [P, V] fp32
    prompt_spans: list[PromptLogitsSpan]


class ModelRunner:
    def __init__(self, rc: ResolvedConfig):
        cfg, model_cfg, device, dtype, max_model_len = rc.cfg, rc.model, rc.device, rc.dtype, rc.max_model_len
        self.cfg, self.model_cfg, self.device, self.dtype = cfg, model_cfg, device, dtype
        self.block_size = cfg.block_size
        self.max_num_batched_tokens = rc.max_num_batched_tokens
        if device.type == "cuda":
            torch.cuda.set_device(device)
            torch.cuda.reset_peak_memory_stats(device)
        self.model = build_model(model_cfg, device, dtype)
        if cfg.load_format == "dummy":
            init_dummy_weights(self.model, cfg.seed)
        else:
            load_weights(self.model, rc.model_path)
        self.weights_bytes = sum(p.numel() * p.element_size() for p in self.model.parameters())
        # weight-only int8 (CPU): the C++ step streams the int8 copy; torch's forward the dequantized weights
        self.int8 = quantize_int8(self.model) if cfg.quantization == "int8" else None
        if self.int8:
            self.weights_bytes -= sum(q.numel() * (dtype.itemsize - 1) - s.numel() * 4 for q, s in self.int8.values())
        self.backend = make_backend(rc.attention_backend, device, cfg.block_size)
        self.threads = ThreadTuner(torch.get_num_threads()) if device.type == "cpu" else None
        self.cos, self.sin = cos_sin_table(model_cfg.head_dim, model_cfg.rope_theta, model_cfg.rope_scaling,
                                           model_cfg.max_position_embeddings,
                                           max(max_model_len, model_cfg.max_position_embeddings) + 1, device)
        self.num_blocks = cfg.num_kv_blocks or self._blocks_from_budget(max_model_len)
        # CUDA graphs (cuda_graph.py) point the pad rows of a decode batch at one extra scratch block
        # past the pool's blocks, which the pool never hands out
        use_graphs = supports_graphs(device, cfg.enforce_eager, self.backend)
        shape = self.backend.cache_shape(model_cfg.num_layers, self.num_blocks + use_graphs, self.block_size,
                                         model_cfg.num_kv_heads, model_cfg.head_dim)
        # zeros, not empty: a read past a context's end (graph pad rows, a masked tail) must never
        # meet uninitialised NaN/Inf, which a mask cannot cancel (0 * NaN = NaN); one memset at load
        self.kv_cache = torch.zeros(shape, dtype=dtype, device=device)
        self.kv_cache_bytes = self.kv_cache.numel() * self.kv_cache.element_size()
        # every step on a CPU (decode tokens, prefill chunks): one C++ call (kernels/cpu_llama.py)
        self.cpu_step = cpu_llama.build(self.model, self.backend, self.kv_cache, self.block_size, self.cos, self.sin,
                                        torch.get_num_threads(), self.int8) if device.type == "cpu" else None
        if self.int8 and self.cpu_step is None:
            log.warning("quantization='int8': the CPU step does not run here, so torch runs the dequantized "
                        "weights (the int8 model's numbers, without its speed)")
        self.graphs = None
        if use_graphs:
            self.graphs = build_decode_graphs(
                self.model, self._context, self.cos, self.sin, block_size=self.block_size,
                max_model_len=max_model_len, max_batch_size=cfg.max_num_seqs, scratch_block=self.num_blocks,
                device=device)

    # -- sizing -----------------------------------------------------------------------------------
    def block_bytes(self) -> int:
        m = self.model_cfg
        return 2 * m.num_layers * self.block_size * m.num_kv_heads * m.head_dim * self.dtype.itemsize

    def _blocks_from_budget(self, max_model_len: int) -> int:
        if self.device.type == "cuda":
            budget = self._cuda_kv_budget(max_model_len)
        else:
            total_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            budget = self.cfg.cpu_kv_cache_bytes or min(2 << 30, total_ram // 5)
        blocks = budget // self.block_bytes()
        # more blocks than max_num_seqs full-length sequences could ever hold is memory for nothing
        useful = self.cfg.max_num_seqs * -(-max_model_len // self.block_size)
        blocks = min(blocks, useful)
        if blocks < 1:
            raise ValueError(f"no memory left for the KV cache (one block needs {self.block_bytes()} bytes); "
                             "raise gpu_memory_utilization or pass num_kv_blocks")
        return int(blocks)

    @torch.inference_mode()
    def _cuda_kv_budget(self, max_model_len: int) -> int:
        """Run the largest step once with a throwaway cache to learn peak activation memory."""
        n = min(self.max_num_batched_tokens, max_model_len)
        nblocks = -(-n // self.block_size)
        m = self.model_cfg
        cache = torch.empty(self.backend.cache_shape(m.num_layers, nblocks, self.block_size, m.num_kv_heads,
                                                     m.head_dim), dtype=self.dtype, device=self.device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(self.device)
        positions = np.arange(n, dtype=np.int64)
        meta = self.build_metadata([n], [n], [list(range(nblocks))], positions)
        hidden = self._forward(torch.randint(0, m.vocab_size, (n,)).tolist(), positions, meta, cache)
        self.model.compute_logits(hidden[-min(n, self.cfg.max_num_seqs):])
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(self.device)
        del cache, hidden
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(self.device)
        used_by_others = total - free - torch.cuda.memory_reserved(self.device)
        return int(total * self.cfg.gpu_memory_utilization - peak - used_by_others)

    # -- one step ---------------------------------------------------------------------------------
    def build_metadata(self, query_lens: list[int], seq_lens: list[int], tables: list[list[int]],
                       positions: np.ndarray) -> AttentionMetadata:
        bs, dev = self.block_size, self.device
        width = max(len(t) for t in tables)
        table = np.zeros((len(tables), width), dtype=np.int64)
        for i, t in enumerate(tables):
            table[i, :len(t)] = t
        seq_idx = np.repeat(np.arange(len(tables)), query_lens)
        slots = table[seq_idx, positions // bs] * bs + positions % bs
        num_decodes = 0
        while num_decodes < len(query_lens) and query_lens[num_decodes] == 1:
            num_decodes += 1
        return AttentionMetadata(
            slot_mapping=torch.from_numpy(slots).to(dev, non_blocking=True),
            query_start_loc=torch.from_numpy(np.concatenate(([0], np.cumsum(query_lens))).astype(np.int32)).to(dev),
            seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=dev),
            block_tables=torch.from_numpy(table.astype(np.int32)).to(dev, non_blocking=True),
            num_decodes=num_decodes, max_query_len=max(query_lens), max_seq_len=max(seq_lens),
            query_lens_cpu=query_lens, seq_lens_cpu=seq_lens, block_tables_cpu=tables)

    def _context(self, meta: AttentionMetadata, cos: torch.Tensor, sin: torch.Tensor) -> ForwardContext:
        return ForwardContext(meta, self.kv_cache, self.backend, cos, sin)

    def _forward(self, ids: list[int], positions: np.ndarray, meta: AttentionMetadata, kv_cache) -> torch.Tensor:
        pos_t = torch.from_numpy(positions).to(self.device, non_blocking=True)
        ctx = ForwardContext(meta, kv_cache, self.backend, self.cos[pos_t], self.sin[pos_t])
        return self.model(torch.tensor(ids, dtype=torch.long).to(self.device, non_blocking=True), ctx)

    @torch.inference_mode()
    def run(self, batch: Batch) -> StepOutput:
        ids: list[int] = []
        positions: list[int] = []
        query_lens, seq_lens, tables = [], [], []
        sample_rows: list[int] = []
        prompt_rows: list[int] = []
        spans: list[PromptLogitsSpan] = []
        start = 0
        for it in batch.items:
            s, c, n = it.seq, it.seq.num_computed, it.num_new
            ids.extend(s.token_ids[c:c + n])
            positions.extend(range(c, c + n))
            query_lens.append(n)
            seq_lens.append(c + n)
            tables.append(s.blocks)
            if it.sample:
                sample_rows.append(start + n - 1)
            req = s.request
            if req.needs_prompt_logprobs and s.index == 0:
                lo = max(c, req.prompt_logprobs_done - 1)
                hi = min(c + n, len(req.prompt_token_ids) - 1)
                if hi > lo:
                    spans.append(PromptLogitsSpan(req, lo, slice(len(prompt_rows), len(prompt_rows) + hi - lo)))
                    prompt_rows.extend(range(start + lo - c, start + hi - c))
            start += n

        rows = sample_rows + prompt_rows
        if self.cpu_step is not None:
            # a step on a CPU: the whole model in one C++ call (kernels/cpu_llama.py)
            logits = self.cpu_step(ids, positions, query_lens, tables, rows)
        else:
            pos_np = np.asarray(positions, dtype=np.int64)
            with self.threads.step(len(ids)) if self.threads else nullcontext():
                hidden = self.graphs.run(ids, pos_np, query_lens, seq_lens, tables) if self.graphs else None
                if hidden is None:          # not a decode-only step the graphs cover: run eagerly
                    meta = self.build_metadata(query_lens, seq_lens, tables, pos_np)
                    hidden = self._forward(ids, pos_np, meta, self.kv_cache)
            # one big matmul ([rows, hidden] x [hidden, vocab]): always worth every thread
            logits = self.model.compute_logits(hidden[rows]) if rows else None
        ns = len(sample_rows)
        return StepOutput(
            sample_logits=logits[:ns] if ns else None,
            prompt_logits=logits[ns:] if prompt_rows else None,
            prompt_spans=spans)

    @torch.inference_mode()
    def copy_blocks(self, src: list[int], dst: list[int]) -> None:
        """Copy-on-fork: give each child its own copy of the parent's partial last block."""
        s = torch.tensor(src, device=self.device)
        d = torch.tensor(dst, device=self.device)
        self.backend.copy_blocks(self.kv_cache, s, d)

    def close(self) -> None:
        """Free weights, KV cache and graphs now (GPU memory returns to where it was)."""
        if self.cpu_step is not None:
            self.cpu_step.close()
        del self.graphs, self.model, self.kv_cache, self.cos, self.sin
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
