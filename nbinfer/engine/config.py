"""Engine configuration: one frozen dataclass, validated once, resolved once at load time (resolved.py).

Every option is written here once: LLM(...)'s keyword arguments, their defaults and help come from
these fields, and the choice tuples below are the one list of valid values for each option that
has a fixed set (the magics build their flags and choices from them).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields

import torch

from ..models.quantize import QUANTIZATIONS
from .attention.registry import AUTO, backend_names
from .checks import Checker

ATTENTION_BACKENDS = (AUTO, *backend_names())
DTYPES = ("auto", "float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
DEVICES = ("auto", "cpu", "cuda")                 # "cuda:N" names one GPU
SCHEDULE_POLICIES = ("fcfs", "lpm", "auto")
LOAD_FORMATS = ("auto", "dummy")


def option(default, help: str, choices: tuple | None = None):
    """A config field with its one-line help (and its choices, where the values are a fixed set)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class EngineConfig:
    # the first thirteen in the order of vLLM's / the contract's LLM(...) signature
    model: str | None = option(None, "local folder or HF hub id; None = the bundled default model")
    dtype: str = option("auto", "weights and KV dtype; auto: bf16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else fp32", DTYPES)
    device: str = option("auto", "auto: cuda if available, else cpu; or cuda:N", DEVICES)
    block_size: int = option(16, "tokens per KV block")
    num_kv_blocks: int | None = option(None, "KV blocks in the pool; None: sized from the memory budget")
    gpu_memory_utilization: float = option(
        0.9, "fraction of total GPU memory the engine may take (weights + KV + activations)")
    max_num_seqs: int = option(256, "sequences running per step")
    max_num_batched_tokens: int | None = option(None, "token budget per step; None: 8192 on CUDA, 2048 on a CPU")
    max_model_len: int | None = option(
        None, "context length; None: the model's max_position_embeddings (capped to the KV pool)")
    enable_prefix_caching: bool = option(True, "reuse the KV blocks of cached prefixes (radix tree)")
    attention_backend: str = option(
        "auto", "auto: triton on CUDA, cpu on a CPU; torch: the plain reference", ATTENTION_BACKENDS)
    tensor_parallel_size: int = option(1, "must be 1: one device inside the notebook kernel")
    seed: int = option(0, "seed of the sampler (and of dummy weights)")
    # beyond the contract
    cpu_kv_cache_bytes: int | None = option(None, "CPU KV budget in bytes; None: min(2 GiB, 20% of RAM)")
    enforce_eager: bool = option(False, "True: no CUDA graphs")
    schedule_policy: str = option(
        "auto", "auto (lpm while SGL programs' requests wait, fcfs otherwise) | fcfs | lpm (longest cached prefix first)",
        SCHEDULE_POLICIES)
    trust_remote_code: bool = option(False, "let transformers run the model folder's own config/tokenizer code")
    load_format: str = option("auto", "auto: safetensors; dummy: random weights (benchmarks)", LOAD_FORMATS)
    revision: str | None = option(None, "hub revision (branch, tag or commit) of model")
    tokenizer: str | None = option(None, "tokenizer from elsewhere (folder, .gguf file, hub id); None: the model's")
    quantization: str | None = option(
        None, "int8: weight-only int8 matrices, one scale per output row (CPU; a quarter of fp32's bytes per "
        "decode token); None: the weights as loaded", QUANTIZATIONS)

    def __post_init__(self):
        """Every option checked at construction (type, range, finiteness): a ValueError naming it."""
        check = Checker()
        model = self.model
        if isinstance(model, os.PathLike):
            model = os.fspath(model)
        self._set("model", check.string("model", model, optional=True))
        self._set("dtype", _dtype_name(self.dtype))
        self._set("device", _device_name(check, self.device))
        for name in ("block_size", "max_num_seqs"):
            self._set(name, check.integer(name, getattr(self, name), low=1))
        for name in ("num_kv_blocks", "max_num_batched_tokens", "max_model_len", "cpu_kv_cache_bytes"):
            self._set(name, check.integer(name, getattr(self, name), low=1, optional=True))
        self._set("gpu_memory_utilization", check.number("gpu_memory_utilization", self.gpu_memory_utilization,
                                                         low=0.0, high=1.0, low_open=True))
        for name in ("enable_prefix_caching", "enforce_eager", "trust_remote_code"):
            check.boolean(name, getattr(self, name))
        for f in fields(self):
            value = getattr(self, f.name)
            if f.metadata["choices"] and f.name not in ("dtype", "device") and not (value is None is f.default):
                one_of(f.name, value, f.metadata["choices"])     # dtype, device: normalised above
        self._set("seed", check.integer("seed", self.seed, low=-2**63, high=2**64 - 1))
        self._set("revision", check.string("revision", self.revision, optional=True))
        tokenizer = os.fspath(self.tokenizer) if isinstance(self.tokenizer, os.PathLike) else self.tokenizer
        self._set("tokenizer", check.string("tokenizer", tokenizer, optional=True))
        if check.integer("tensor_parallel_size", self.tensor_parallel_size, low=1) != 1:
            raise ValueError(
                f"tensor_parallel_size={self.tensor_parallel_size} is not supported: "
                "nbinfer runs the model on one device inside the notebook kernel")

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)      # normalising a frozen dataclass's own field

    @classmethod
    def from_kwargs(cls, **kwargs) -> "EngineConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown engine option(s): {', '.join(unknown)}")
        return cls(**kwargs)


def one_of(name: str, value, choices: tuple) -> None:
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}" if len(choices) > 1 else repr(choices[0])
        raise ValueError(f"{name} must be {listed}, got {value!r}")


def _dtype_name(value) -> str:
    """A dtype name (aliases allowed) or a torch.dtype -> its name in DTYPES."""
    if isinstance(value, torch.dtype):
        value = str(value).replace("torch.", "")
    value = DTYPE_ALIASES.get(value, value) if isinstance(value, str) else value
    one_of("dtype", value, DTYPES)
    return value


def _device_name(check: Checker, value) -> str:
    """'auto', 'cpu', 'cuda', 'cuda:N' (or a torch.device) -> its name; whether CUDA is there is
    checked when the config is resolved."""
    if isinstance(value, torch.device):
        value = str(value)
    if isinstance(value, str) and (value in DEVICES or re.fullmatch(r"cuda:\d+", value)):
        return value
    check.fail("device", value, "must be 'auto', 'cpu', 'cuda' or 'cuda:N'")
