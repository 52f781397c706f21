"""Engine configuration: one frozen dataclass, validated once, resolved once at load time (resolved.py).

Every option is written here once: LLM(...)'s keyword arguments, their defaults and help come from
these fields, and the choice tuples below are the one list of valid values for each option that
has a fixed set (the magics build their flags and choices from them).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields

from .attention.registry import AUTO, backend_names

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
    dtype: str = option("auto", "weights and KV dtype; auto: bf16 on CUDA, fp32 on a CPU", DTYPES)
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
        "auto", "fcfs | lpm (longest cached prefix first) | auto (lpm while SGL programs' requests wait)",
        SCHEDULE_POLICIES)
    trust_remote_code: bool = option(False, "let transformers run the model folder's own config/tokenizer code")
    load_format: str = option("auto", "auto: safetensors; dummy: random weights (benchmarks)", LOAD_FORMATS)
    revision: str | None = option(None, "hub revision (branch, tag or commit) of model")

    def __post_init__(self):
        def positive(name, allow_none=False):
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        positive("block_size")
        positive("num_kv_blocks", allow_none=True)
        positive("max_num_seqs")
        positive("max_num_batched_tokens", allow_none=True)
        positive("max_model_len", allow_none=True)
        positive("cpu_kv_cache_bytes", allow_none=True)
        if not 0.0 < float(self.gpu_memory_utilization) <= 1.0:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization!r}")
        for f in fields(self):
            choices = f.metadata["choices"]
            if choices and f.name not in ("dtype", "device"):     # resolved (with aliases) in resolved.py
                one_of(f.name, getattr(self, f.name), choices)
        if self.tensor_parallel_size != 1:
            raise ValueError(
                f"tensor_parallel_size={self.tensor_parallel_size} is not supported: "
                "nbinfer runs the model on one device inside the notebook kernel")

    @classmethod
    def from_kwargs(cls, **kwargs) -> "EngineConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown engine option(s): {', '.join(unknown)}")
        return cls(**kwargs)


def one_of(name: str, value, choices: tuple) -> None:
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
        raise ValueError(f"{name} must be {listed}, got {value!r}")
