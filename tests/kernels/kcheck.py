"""Helpers for kernel-vs-reference checks: poisoned outputs and relative errors."""
from __future__ import annotations

import torch

# relative-error bounds (||out - ref|| / ||ref||) per activation dtype, from METHOD.md's ranges. Triton's
# CPU interpreter truncates fp32 -> bf16 instead of rounding to nearest: biased, so errors of chained
# casts add up; it gets a looser bf16 bound.
TOL = {torch.float32: 2e-5, torch.float16: 2e-3,
       torch.bfloat16: 1e-2 if torch.cuda.is_available() else 2.5e-2}


def poisoned(shape, dtype, device) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def randn(shape, dtype, device, gen, scale=1.0) -> torch.Tensor:
    return (torch.randn(shape, generator=gen) * scale).to(dtype=dtype, device=device)


def assert_close(out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    assert out.shape == ref.shape, f"{what}: shape {tuple(out.shape)} vs {tuple(ref.shape)}"
    assert not torch.isnan(out).any(), f"{what}: {int(torch.isnan(out).sum())} elements not written (NaN)"
    o, r = out.double().cpu(), ref.double().cpu()
    err = float((o - r).norm() / r.norm().clamp_min(1e-30))
    assert err < TOL[dtype], f"{what}: relative error {err:.2e} > {TOL[dtype]:.0e}"
