"""What this CPU can do natively, for choices made once at load (dtype="auto")."""
from __future__ import annotations

import os
from pathlib import Path

import torch

_BF16_FLAGS = ("avx512_bf16", "amx_bf16")        # x86: bf16 dot products in hardware


def native_bf16() -> bool:
    """Whether the CPU computes in bf16 natively (x86 AVX512-BF16 or AMX-BF16, Arm BF16).
    NBINFER_CPU_BF16=0 / 1 overrides the detection (the test suite pins 0, so fp32 runs everywhere)."""
    forced = os.environ.get("NBINFER_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    caps = getattr(getattr(torch._C, "_cpu", None), "_get_cpu_capability", None)
    if caps is not None:
        try:
            found = caps()
            return any(found.get(flag) for flag in _BF16_FLAGS)
        except (RuntimeError, TypeError):
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return any(flag in line.split() for flag in _BF16_FLAGS)
            if line.startswith("Features"):             # aarch64
                return "bf16" in line.split()
    except OSError:
        pass
    return False
