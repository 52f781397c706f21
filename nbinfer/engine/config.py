"""Engine configuration: one frozen dataclass, validated once, resolved once at load time."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .attention.registry import AUTO, backend_names

ATTENTION_BACKENDS = (AUTO, *backend_names())     # every list of backend names derives from the registry


@dataclass(frozen=True)
class EngineConfig:
    model: str | None = None            # local folder or HF hub id; None = the bundled default model
    dtype: str = "auto"                  # auto: bf16 on CUDA, fp32 on CPU
    device: str = "auto"                 # auto: cuda if available, else cpu
    block_size: int = 16                 # tokens per KV block
    num_kv_blocks: int | None = None     # None: sized from the memory budget
    gpu_memory_utilization: float = 0.9  # fraction of total GPU memory the engine may take (weights + KV + activations)
    cpu_kv_cache_bytes: int | None = None  # CPU KV budget; None = min(2 GiB, 20% of RAM)
    max_num_seqs: int = 256              # running sequences per step
    max_num_batched_tokens: int | None = None  # token budget per step; None = 8192 on CUDA, 2048 on CPU
    max_model_len: int | None = None     # None = the model's max_position_embeddings (capped to the KV pool)
    enable_prefix_caching: bool = True
    attention_backend: str = "auto"      # auto: triton on CUDA, cpu on a CPU; torch: the NHD reference
    tensor_parallel_size: int = 1
    seed: int = 0
    enforce_eager: bool = False          # True: no CUDA graphs
    schedule_policy: str = "auto"        # "fcfs" | "lpm" (longest cached prefix first) | "auto" (lpm while
                                         # SGL programs' requests wait, fcfs otherwise)
    trust_remote_code: bool = False
    load_format: str = "auto"            # "auto": safetensors; "dummy": random weights (benchmarks)
    revision: str | None = None

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
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f"attention_backend must be one of {ATTENTION_BACKENDS}, got {self.attention_backend!r}")
        if self.tensor_parallel_size != 1:
            raise ValueError(
                f"tensor_parallel_size={self.tensor_parallel_size} is not supported: "
                "nbinfer runs the model on one device inside the notebook kernel")
        if self.load_format not in ("auto", "dummy"):
            raise ValueError(f"load_format must be 'auto' or 'dummy', got {self.load_format!r}")
        if self.schedule_policy not in ("fcfs", "lpm", "auto"):
            raise ValueError(f"schedule_policy must be 'fcfs', 'lpm' or 'auto', got {self.schedule_policy!r}")

    @classmethod
    def from_kwargs(cls, **kwargs) -> "EngineConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown engine option(s): {', '.join(unknown)}")
        return cls(**kwargs)
