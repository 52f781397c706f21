"""ResolvedConfig: EngineConfig with every "auto" and None decided for this machine and this model.

Resolved once at load and handed to the model runner, the scheduler and the engine, so no part of
the engine decides a device, a dtype, a length or a token budget on its own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..kernels import cpu_features
from ..models.config import ModelConfig
from ..models.loader import architecture_of, load_hf_config, resolve_model_path
from .attention.registry import check_backend, resolve_backend_name
from .config import DTYPE_ALIASES, DTYPES, EngineConfig, one_of

log = logging.getLogger("nbinfer")

_TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_DEFAULT_TOKEN_BUDGET = {"cuda": 8192, "cpu": 2048}


@dataclass(frozen=True)
class ResolvedConfig:
    cfg: EngineConfig                    # what the user asked for
    model_path: Path
    model: ModelConfig
    device: torch.device
    dtype: torch.dtype
    attention_backend: str               # a registry name, never "auto"
    max_model_len: int                   # asked for or the model's, capped at the sliding window (and by
                                         # fit_pool at what the KV pool holds)
    max_num_batched_tokens: int

    @classmethod
    def resolve(cls, cfg: EngineConfig) -> "ResolvedConfig":
        path = resolve_model_path(cfg.model, cfg.revision)
        hf_config = load_hf_config(path, cfg.trust_remote_code)
        mc = ModelConfig.from_hf(hf_config, architecture_of(hf_config, path))
        device = resolve_device(cfg.device)
        if cfg.quantization and device.type != "cpu":
            raise ValueError(f"quantization={cfg.quantization!r} runs on a CPU only (its kernels are the CPU step's); "
                             f"use device='cpu' or no quantization")
        if cfg.max_model_len and cfg.max_model_len > mc.max_position_embeddings:
            # past the positions it was trained on a model's output degrades silently: refuse, as vLLM does
            raise ValueError(f"max_model_len={cfg.max_model_len} is more than the model's "
                             f"max_position_embeddings ({mc.max_position_embeddings})")
        max_len = cfg.max_model_len or mc.max_position_embeddings
        if mc.sliding_window and mc.sliding_window < max_len:
            log.warning("capping max_model_len at the model's sliding window (%d): nbinfer attends to "
                        "the full context", mc.sliding_window)
            max_len = mc.sliding_window
        return cls(cfg, path, mc, device, resolve_dtype(cfg.dtype, device),
                   resolve_backend_name(cfg.attention_backend, device), max_len,
                   cfg.max_num_batched_tokens or _DEFAULT_TOKEN_BUDGET.get(device.type, 2048))

    def fit_pool(self, num_blocks: int) -> "ResolvedConfig":
        """max_model_len capped at what a pool of num_blocks holds, so a lone request always fits
        and none can wait forever; an explicit max_model_len the pool cannot hold is an error."""
        block_size = self.cfg.block_size
        capacity = num_blocks * block_size
        if capacity >= self.max_model_len:
            return self
        if self.cfg.max_model_len:
            raise ValueError(f"max_model_len={self.cfg.max_model_len} needs {-(-self.max_model_len // block_size)} "
                             f"KV blocks but the pool holds {num_blocks}; lower max_model_len "
                             "or give the cache more memory (num_kv_blocks, gpu_memory_utilization)")
        return replace(self, max_model_len=capacity)


def check_for_this_machine(cfg: EngineConfig) -> None:
    """What can be refused without reading the model: a device this machine lacks, an attention
    backend that cannot run on it (ValueError naming the option)."""
    check_backend(cfg.attention_backend, resolve_device(cfg.device))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available here")
    if dev.type not in ("cuda", "cpu"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {name!r}")
    return dev


def resolve_dtype(dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":        # bf16 where the hardware computes in it natively (CUDA; CPUs with bf16 dot products)
        return torch.bfloat16 if device.type == "cuda" or cpu_features.native_bf16() else torch.float32
    dtype = DTYPE_ALIASES.get(dtype, dtype)
    one_of("dtype", dtype, DTYPES)
    return _TORCH_DTYPES[dtype]
