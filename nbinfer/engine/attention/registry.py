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
    check: Callable[["torch.device"], None]                         # raises ValueError if it cannot run there


_BACKENDS: dict[str, BackendEntry] = {}


def _runs_anywhere(device) -> None:
    pass


def register(name: str, summary: str, check: Callable[["torch.device"], None] = _runs_anywhere):
    def add(build):
        _BACKENDS[name] = BackendEntry(name, summary, build, check)
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


def check_backend(name: str, device: "torch.device") -> str:
    """The backend's registry name, once it is known to run on `device` (cheap: nothing is built or
    compiled), so a load can refuse a backend before anything is unloaded."""
    resolved = resolve_backend_name(name, device)
    _BACKENDS[resolved].check(device)
    return resolved


def make_backend(name: str, device: "torch.device", block_size: int) -> "AttentionBackend":
    return _BACKENDS[check_backend(name, device)].build(device, block_size)


def _needs_cpu(device) -> None:
    if device.type != "cpu":
        raise ValueError(f"attention_backend='cpu' needs the CPU, but the engine runs on {device}")


def _needs_cuda_or_interpreter(device) -> None:
    try:
        from .triton_backend import runs_on
    except ImportError as e:
        raise ValueError(f"attention_backend='triton' needs the triton package ({e})") from e
    runs_on(device)


@register("cpu", "CPU: head-major cache, decode in a C++ kernel on every thread (auto on a CPU)", _needs_cpu)
def _build_cpu(device, block_size):
    from .cpu_backend import CpuAttention
    return CpuAttention(block_size)


@register("torch", "plain PyTorch SDPA over the NHD cache: the reference")
def _build_torch(device, block_size):
    from .torch_backend import TorchAttention
    return TorchAttention()


@register("triton", "Triton paged decode/extend kernels (auto on CUDA)", _needs_cuda_or_interpreter)
def _build_triton(device, block_size):
    from .triton_backend import TritonAttention
    return TritonAttention(device)
