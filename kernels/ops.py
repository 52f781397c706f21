"""The model's small fused ops: Triton kernels for CUDA tensors, plain torch everywhere else.

The torch versions below are the references the kernels are tested against *and* the CPU path of
the model. They reproduce HF transformers' arithmetic step for step (same casts, same order), which
is what keeps nbinfer's CPU greedy output token-identical to HF's. This module imports only torch:
triton is loaded on the first CUDA call, so CPU installs never need it.
"""
from __future__ import annotations

import importlib
import logging

import torch
import torch.nn.functional as F

from nbinfer.models.rope import apply_rope as rope_ref   # HF's rotation: the reference for kernels/rope.py

log = logging.getLogger("nbinfer")

_kernel_modules: dict[str, object] = {}
_triton_on_cpu = False


def use_triton_on_cpu(enabled: bool) -> None:
    """Run the Triton kernels on CPU tensors too: only meaningful under TRITON_INTERPRET=1 (tests)."""
    global _triton_on_cpu
    _triton_on_cpu = bool(enabled)


def _kernels(name: str, x: torch.Tensor):
    """The Triton module `name` if x should take the Triton path and triton imports, else None."""
    if not (x.is_cuda or _triton_on_cpu):
        return None
    mod = _kernel_modules.get(name, False)
    if mod is False:
        try:
            mod = importlib.import_module(f"{__package__}.{name}")
        except ImportError as e:     # a CUDA torch without triton: slower, still correct
            log.warning("triton is not importable (%s); using plain torch for %s", e, name)
            mod = None
        _kernel_modules[name] = mod
    return mod


# -- references (= the CPU path) -------------------------------------------------------------------
def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    """RMSNorm over the last dim; with a residual, adds it first and returns (normed, new residual)."""
    if residual is not None:
        x = residual + x
        residual = x
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    out = weight * h.to(x.dtype)
    return out if residual is None else (out, residual)


def silu_and_mul_ref(gate_up: torch.Tensor) -> torch.Tensor:
    """[..., 2I] -> [..., I]: silu(gate) * up, gate being the first half."""
    gate, up = gate_up.chunk(2, dim=-1)
    return F.silu(gate) * up


# -- dispatch ----------------------------------------------------------------------------------------
def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None):
    k = _kernels("rms_norm", x)
    if k is None:
        return rms_norm_ref(x, weight, eps, residual)
    return k.rms_norm(x, weight, eps, residual)


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """q [T, Hq, D], k [T, Hk, D]; cos/sin [T, D] rows for the tokens' positions."""
    kern = _kernels("rope", q)
    if kern is None:
        return rope_ref(q, k, cos, sin)
    return kern.apply_rope(q, k, cos, sin)


def silu_and_mul(gate_up: torch.Tensor) -> torch.Tensor:
    k = _kernels("silu_mul", gate_up)
    if k is None:
        return silu_and_mul_ref(gate_up)
    return k.silu_and_mul(gate_up)
