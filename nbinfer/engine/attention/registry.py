"""The attention backends by name. Every list of backend names (EngineConfig's choices, the magics'
flags) derives from this registry; each entry imports its module only when built, so naming the
backends costs no Triton import."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

    from .base import AttentionBackend

AUTO = "auto"


@dataclass(frozen=True)
class BackendEntry:
    name: str
    summary: str                                                     # one line, for help texts
    build: Callable[["torch.device", int], "AttentionBackend"]      # (device, block_size) -> backend


_BACKENDS: dict[str, BackendEntry] = {}


def register(name: str, summary: str):
    def add(build):
        _BACKENDS[name] = BackendEntry(name, summary, build)
        return build
    return add


def backend_names() -> tuple[str, ...]:
    return tuple(_BACKENDS)


def backend_entries() -> tuple[BackendEntry, ...]:
    return tuple(_BACKENDS.values())


def resolve_backend_name(name: str, device: "torch.device") -> str:
    """'auto' picks triton on CUDA, cpu elsewhere."""
    if name == AUTO:
        return "triton" if device.type == "cuda" else "cpu"
    if name not in _BACKENDS:
        raise ValueError(f"attention_backend must be one of {(AUTO, *_BACKENDS)}, got {name!r}")
    return name


def make_backend(name: str, device: "torch.device", block_size: int) -> "AttentionBackend":
    return _BACKENDS[resolve_backend_name(name, device)].build(device, block_size)


@register("cpu", "CPU: head-major cache, decode in a C++ kernel on every thread (auto on a CPU)")
def _build_cpu(device, block_size):
    if device.type != "cpu":
        raise ValueError(f"attention_backend='cpu' needs the CPU, but the engine runs on {device}")
    from .cpu_backend import CpuAttention
    return CpuAttention(block_size)


@register("torch", "plain PyTorch SDPA over the NHD cache: the reference")
def _build_torch(device, block_size):
    from .torch_backend import TorchAttention
    return TorchAttention()


@register("triton", "Triton paged decode/extend kernels (auto on CUDA)")
def _build_triton(device, block_size):
    try:
        from .triton_backend import TritonAttention
    except ImportError as e:
        raise ValueError(f"attention_backend='triton' needs the triton package ({e})") from e
    return TritonAttention(device)
