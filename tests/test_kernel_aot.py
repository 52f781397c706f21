"""The GPU path compiles, checked without a GPU: every launched Triton kernel, at the shapes the engine
launches (head_dim 64/128, GQA groups 1-8, block size 16, fp16/bf16), compiles ahead of time for sm_80
and sm_90 (ptxas ships with triton) without register spills. Groups 1, 2 and 8: group 1 takes the
decode kernel's no-dot path, and every group from 2 to 16 the same 16-row dot tiles, so 4 would add
compile time and nothing else (`python -m nbinfer.kernels.aot_shapes` alone compiles 4 too). Measured:
95 s of CPU with a cold triton cache (reruns hit the cache: seconds), spread over every core. Registers and shared memory per kernel
are printed (pytest -s shows them).

It runs `python -m nbinfer.kernels.aot_shapes` in a subprocess without TRITON_INTERPRET: the kernel
tests set that for the session when there is no GPU, and interpreted kernels cannot be compiled."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("triton")

KERNELS = Path(__file__).resolve().parent.parent / "kernels"


def _launched_kernels() -> set[str]:
    """@triton.jit functions that some launcher launches (`name[grid](...)`), from the sources."""
    src = "\n".join(p.read_text() for p in KERNELS.glob("*.py"))
    jitted = set(re.findall(r"@triton\.jit\s*\ndef (\w+)", src))
    return {name for name in jitted if re.search(rf"\b{name}\[", src)}


def test_every_triton_kernel_compiles_for_sm80_and_sm90_without_spills(tmp_path):
    out = tmp_path / "aot.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "nbinfer.kernels.aot_shapes", "--groups", "1", "2", "8", "--json", str(out)],
                          env=env, capture_output=True, text=True, timeout=1800)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(out.read_text())
    assert {r["kernel"] for r in results} == _launched_kernels()
    assert {r["arch"] for r in results} == {80, 90}
    assert all(r["stack_bytes"] == 0 for r in results)             # main() also exits 1 on a spill
    assert all(0 < r["registers"] <= 255 for r in results)
    decode = {r["launch"] for r in results if r["kernel"] == "_decode_kernel"}
    for dtype in ("fp16", "bf16"):
        for head_dim in (64, 128):
            for group in (1, 2, 8):
                shape = f"GROUP={group}, HEAD_DIM={head_dim}, PAGE=16"
                assert any(f"[{dtype}" in d and shape in d and "NUM_SPLITS=1," in d for d in decode), (dtype, shape)
                assert any(f"[{dtype}" in d and shape in d and "NUM_SPLITS=1," not in d for d in decode), (dtype, shape)
