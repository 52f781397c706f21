"""Every Triton launch the engine makes, at its models' shapes, compiled ahead of time for sm_80 and sm_90.

    python -m nbinfer.kernels.aot_shapes [--arch 80 90] [--groups 1 2 4 8] [--jobs N] [--json PATH]

prints registers, shared memory and stack (spills) per kernel and exits 1 if any kernel spills.
tests/test_kernel_aot.py runs it in CI (no GPU needed). Run it without TRITON_INTERPRET: interpreted
kernels are not compilable objects.

The launches come from the real launchers (paged_decode_attention, paged_extend_attention, kv_write,
rms_norm, apply_rope, silu_and_mul) called as the engine calls them, on CPU tensors, with the kernels
replaced by recorders (aot.recording): head_dim 64 and 128, GQA groups 1, 2, 4 and 8, block size 16,
fp16 and bf16; decode both as one split (short contexts) and split-KV (long contexts on an H100's
132 SMs), so the merge kernel is compiled too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from itertools import product
from multiprocessing import get_context

import torch

from . import decode_attention, extend_attention, kv_write, rms_norm, rope, silu_mul
from .aot import Launch, Resources, compile_launch, recording

HEAD_DIMS = (64, 128)
GROUPS = (1, 2, 4, 8)
DTYPES = (torch.float16, torch.bfloat16)
KV_HEADS = 4
BLOCK_SIZE = 16
H100_SMS = 132
EXTRA_HIDDEN = (8192,)           # a 70B model's RMSNorm row (BLOCK 8192, 16 warps)


def engine_launches(groups=GROUPS) -> list[Launch]:
    """The distinct launches (kernel, types, constexprs, alignment, warps) of a mixed decode + prefill step."""
    mods = (decode_attention, extend_attention, kv_write, rms_norm, rope, silu_mul)
    with recording(*mods) as launches:
        for dtype, head_dim, group in product(DTYPES, HEAD_DIMS, groups):
            _step(dtype, head_dim, group)
        for dtype, hidden in product(DTYPES, EXTRA_HIDDEN):
            _norms(dtype, hidden)
    return list(dict.fromkeys(launches))


def _norms(dtype, hidden: int, tokens: int = 4) -> None:
    x, w = torch.empty(tokens, hidden, dtype=dtype), torch.empty(hidden, dtype=dtype)
    rms_norm.rms_norm(x, w, 1e-6)
    rms_norm.rms_norm(x, w, 1e-6, torch.empty_like(x))


def _step(dtype, head_dim: int, group: int) -> None:
    """One layer of a step with 3 decodes and a prefill chunk of 8 tokens after 8 cached ones, as
    nbinfer/models/llama.py and the Triton attention backend launch it."""
    hk, hq = KV_HEADS, KV_HEADS * group
    hidden, decodes, chunk, cached = hq * head_dim, 3, 8, 8
    t = decodes + chunk
    _norms(dtype, hidden, t)
    qkv = torch.empty(t, (hq + 2 * hk) * head_dim, dtype=dtype)           # q, k, v: views of one projection
    q, k, v = (x.view(t, -1, head_dim) for x in qkv.split([hq * head_dim, hk * head_dim, hk * head_dim], -1))
    cos = sin = torch.empty(t, head_dim, dtype=torch.float32)
    q, k = rope.apply_rope(q, k, cos, sin)
    silu_mul.silu_and_mul(torch.empty(t, 2 * 4 * hidden, dtype=dtype))

    blocks = 4096 // BLOCK_SIZE
    k_cache = torch.empty(blocks, BLOCK_SIZE, hk, head_dim, dtype=dtype)
    v_cache = torch.empty_like(k_cache)
    kv_write.kv_write(k, v, k_cache, v_cache, torch.zeros(t, dtype=torch.int64))
    tables = torch.zeros(decodes + 1, blocks, dtype=torch.int32)
    out = torch.empty_like(q)
    for max_seq_len in (200, 4096):          # one split (short contexts), split-KV + merge (long ones)
        seq_lens = torch.full((decodes + 1,), max_seq_len, dtype=torch.int32)
        splits = decode_attention.num_kv_splits(decodes, hk, max_seq_len, H100_SMS)
        decode_attention.paged_decode_attention(q[:decodes], k_cache, v_cache, tables[:decodes], seq_lens[:decodes],
                                                head_dim ** -0.5, out=out[:decodes], num_splits=splits)
    qsl = torch.tensor([0, 1, 2, 3, t], dtype=torch.int32)
    seq_lens = torch.tensor([100, 100, 100, cached + chunk], dtype=torch.int32)
    extend_attention.paged_extend_attention(q, k_cache, v_cache, tables, seq_lens, qsl, head_dim ** -0.5,
                                            chunk, out=out, first_seq=decodes)


def _compile(job: tuple[Launch, int]) -> Resources:
    return compile_launch(*job)


def compile_all(launches: list[Launch], archs=(80, 90), jobs: int | None = None) -> list[Resources]:
    """Compile every launch for every arch, `jobs` processes at a time (default: one per CPU)."""
    work = [(launch, arch) for launch in launches for arch in archs]
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1:
        return [_compile(w) for w in work]
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        return list(pool.map(_compile, work))


def table(results: list[Resources]) -> str:
    lines = ["| kernel | arch | registers | shared B | stack B | compile s |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.launch.describe()} | sm_{r.arch} | {r.registers} | {r.shared_bytes} | "
                     f"{r.stack_bytes}{' SPILLS' if r.spills else ''} | {r.seconds:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m nbinfer.kernels.aot_shapes", description=__doc__.splitlines()[0])
    p.add_argument("--arch", type=int, nargs="+", default=[80, 90])
    p.add_argument("--groups", type=int, nargs="+", default=list(GROUPS),
                   help="GQA groups (query heads per KV head); 2, 4 and 8 share one code path (16-row dot tiles)")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"):
        print("unset TRITON_INTERPRET: interpreted kernels cannot be compiled ahead of time", file=sys.stderr)
        return 2
    results = compile_all(engine_launches(tuple(args.groups)), tuple(args.arch), args.jobs)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"kernel": r.launch.kernel, "launch": r.launch.describe(), "arch": r.arch,
                        "registers": r.registers, "shared_bytes": r.shared_bytes,
                        "static_shared_bytes": r.static_shared_bytes, "stack_bytes": r.stack_bytes,
                        "seconds": r.seconds} for r in results], f, indent=1)
    spilled = [r for r in results if r.spills]
    for r in spilled:
        print(f"register spills: {r.launch.describe()} on sm_{r.arch} ({r.stack_bytes} B of stack)", file=sys.stderr)
    return 1 if spilled else 0


if __name__ == "__main__":
    sys.exit(main())
