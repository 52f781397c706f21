#!/usr/bin/env python
"""GPU check for nbinfer's kernels: correctness on the device, timings, and achieved bandwidth
against the device's *measured* ceilings (a large device-to-device copy, a large bf16 matmul).

    python scripts/gpu_check.py                 # on a CUDA machine, from the repository root
    python scripts/gpu_check.py --cpu-smoke     # no GPU: tiny shapes under TRITON_INTERPRET=1,
                                                # exercises every section of this script, no figures

Sections: (1) ceilings, (2) every kernel vs its torch reference on fresh random inputs with
NaN-poisoned outputs, bf16/fp16/fp32, (3) kernel timings (median of triton.testing.do_bench) and
achieved bandwidth, (4) a Llama-2-7B-shaped random-weight model's batch-1 decode step, CUDA graph
and eager, against the weight-bytes / bandwidth roofline. Targets: paged decode attention at batch
64 / context 2048 / head_dim 128 >= 80% of measured copy bandwidth; the 7B step >= 85% of roofline.
Headline figures are measured twice (spread = run-to-run noise). A table is printed last; every
number goes to gpu_check.json in --out (default $OUT, else the current folder).

Needs only torch, triton and this repository (no IPython, no transformers at run time).

Floors, predicted before any run (bf16; B = the measured copy bandwidth, ~3.0e12 B/s expected on an H100):
  decode attention B=64, ctx=2048, D=128, 8 KV heads: 2*64*2048*8*128*2 B = 537 MB of K/V -> 537e6/B (~180 us);
    with 32 KV heads (Llama-2-7B) 2.15 GB -> ~720 us. The kernel reads each K/V byte once; 80% is the target.
  Llama-2-7B batch-1 decode step: 6.74e9 params * 2 B minus the 262 MB embedding (one row read) = 13.2 GB
    -> 13.2e9/B (~4.4 ms); KV at context 128 adds 67 MB. Linear layers are cuBLAS GEMVs, so this mostly
    measures cuBLAS plus how little the graph adds around it; 85% is the target.
Suggested device command (the checkout is not installed there; this script maps kernels/ itself):
    python scripts/gpu_check.py
and for the GPU-marked tests (needs `pip install -e . --no-deps --no-build-isolation` first):
    python -m pytest tests/kernels -q
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

if "--cpu-smoke" in sys.argv:
    os.environ["TRITON_INTERPRET"] = "1"      # must precede the first @triton.jit definition

import torch  # noqa: E402
import triton  # noqa: E402
import triton.testing  # noqa: E402


def _import_nbinfer():
    """Import nbinfer from this checkout; without an install, map kernels/ to nbinfer.kernels the way
    pyproject.toml's package-dir does. The checkout goes last on the path: first, its kernels/ would
    shadow PyPI's `kernels`, which transformers imports."""
    sys.path.append(str(ROOT))
    import nbinfer  # noqa: F401
    try:
        import nbinfer.kernels  # noqa: F401
    except ImportError:
        spec = importlib.util.spec_from_file_location("nbinfer.kernels", ROOT / "kernels" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "kernels")])
        mod = importlib.util.module_from_spec(spec)
        sys.modules["nbinfer.kernels"] = mod
        spec.loader.exec_module(mod)


_import_nbinfer()

from nbinfer.engine.attention import AttentionMetadata  # noqa: E402
from nbinfer.engine.attention.torch_backend import TorchAttention  # noqa: E402
from nbinfer.engine.cuda_graph import DecodeGraphs  # noqa: E402
from nbinfer.engine.model_runner import ForwardContext  # noqa: E402
from nbinfer.kernels import ops  # noqa: E402
from nbinfer.engine.attention.triton_backend import TritonAttention  # noqa: E402
from nbinfer.kernels.decode_attention import (num_kv_splits, paged_decode_attention,  # noqa: E402
                                              paged_decode_attention_ref)
from nbinfer.kernels.extend_attention import paged_extend_attention, paged_extend_attention_ref  # noqa: E402
from nbinfer.kernels.kv_write import kv_write, kv_write_ref  # noqa: E402
from nbinfer.kernels.rms_norm import rms_norm  # noqa: E402
from nbinfer.kernels.rope import apply_rope  # noqa: E402
from nbinfer.kernels.silu_mul import silu_and_mul  # noqa: E402
from nbinfer.models.config import ModelConfig  # noqa: E402
from nbinfer.models.loader import build_model  # noqa: E402
from nbinfer.models.rope import cos_sin_table  # noqa: E402

TOL = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 1.5e-2}
RESULTS: dict = {"correctness": [], "timings": [], "model": {}}
SMOKE = False
DEV = torch.device("cpu")
GEN = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------
def sync():
    if DEV.type == "cuda":
        torch.cuda.synchronize()      # surfaces any asynchronous launch error here, not later


def rand(shape, dtype, scale=1.0):
    return (torch.randn(shape, generator=GEN) * scale).to(dtype=dtype, device=DEV)


def bench(fn) -> float:
    """Median seconds per call."""
    if DEV.type == "cuda":
        return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") / 1e3
    fn()
    times = []
    for _ in range(2):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def rel_err(out, ref) -> float:
    o, r = out.double().cpu(), ref.double().cpu()
    if torch.isnan(o).any():
        return float("nan")
    return float((o - r).norm() / r.norm().clamp_min(1e-30))


def record_check(name: str, dtype, out, ref):
    err = rel_err(out, ref)
    ok = err == err and err < TOL[dtype]
    RESULTS["correctness"].append(dict(check=name, dtype=str(dtype).replace("torch.", ""), rel_err=err, ok=ok))
    print(f"  {'ok  ' if ok else 'FAIL'} {name:<58} {str(dtype):<15} rel_err {err:.2e}", flush=True)


def record_time(name: str, seconds: float, bytes_moved: float | None = None, flops: float | None = None,
                ceiling_bw: float | None = None, ceiling_flops: float | None = None, **extra):
    row = dict(name=name, us=seconds * 1e6, **extra)
    if bytes_moved is not None:
        row["GBps"] = bytes_moved / seconds / 1e9
        if ceiling_bw:
            row["pct_bw"] = 100 * bytes_moved / seconds / ceiling_bw
    if flops is not None:
        row["TFLOPs"] = flops / seconds / 1e12
        if ceiling_flops:
            row["pct_flops"] = 100 * flops / seconds / ceiling_flops
    RESULTS["timings"].append(row)
    pct = (f"{row['pct_bw']:5.1f}% bw" if "pct_bw" in row else
           f"{row['pct_flops']:5.1f}% mm" if "pct_flops" in row else "")
    print(f"  {name:<64} {row['us']:10.1f} us  {pct}", flush=True)
    return row


def paged_state(seq_lens, page, hkv, dim, dtype, spare=4):
    """Random K/V for each context in shuffled blocks; all other slots NaN (a stray read shows)."""
    need = [-(-n // page) for n in seq_lens]
    nblocks = sum(need) + spare
    k = torch.full((nblocks, page, hkv, dim), float("nan"), dtype=dtype, device=DEV)
    v = torch.full_like(k, float("nan"))
    perm = torch.randperm(nblocks, generator=GEN).tolist()
    tables = torch.zeros((len(seq_lens), max(need)), dtype=torch.int32)
    for i, n in enumerate(seq_lens):
        blocks = [perm.pop() for _ in range(need[i])]
        tables[i, :need[i]] = torch.tensor(blocks, dtype=torch.int32)
        idx = torch.tensor(blocks, device=DEV)
        fk, fv = k[idx].flatten(0, 1), v[idx].flatten(0, 1)
        fk[:n], fv[:n] = rand((n, hkv, dim), dtype), rand((n, hkv, dim), dtype)
        k[idx], v[idx] = fk.view(need[i], page, hkv, dim), fv.view(need[i], page, hkv, dim)
    return k, v, tables.to(DEV), torch.tensor(seq_lens, dtype=torch.int32, device=DEV)


def dense_state(batch, ctx, page, hkv, dim, dtype):
    """Timing state: every sequence has ctx tokens in randomly permuted (non-contiguous) blocks."""
    per = -(-ctx // page)
    k = rand((batch * per + 1, page, hkv, dim), dtype)
    v = rand((batch * per + 1, page, hkv, dim), dtype)
    tables = torch.randperm(batch * per, generator=GEN).view(batch, per).to(torch.int32).to(DEV)
    return k, v, tables, torch.full((batch,), ctx, dtype=torch.int32, device=DEV)


# ---------------------------------------------------------------------------------------------------
# 1. ceilings
# ---------------------------------------------------------------------------------------------------
def measure_ceilings() -> tuple[float, float]:
    print("== ceilings (measured)")
    n = (1 << 16) if SMOKE else (1 << 30)           # 2 GiB of bf16 per buffer on a GPU
    src = rand((n,), torch.bfloat16)
    dst = torch.empty_like(src)
    bws = []
    for _ in range(2):
        t = bench(lambda: dst.copy_(src))
        bws.append(2 * src.numel() * src.element_size() / t)   # bytes read + bytes written
    del src, dst
    m = 256 if SMOKE else 8192
    a, b = rand((m, m), torch.bfloat16), rand((m, m), torch.bfloat16)
    flops = []
    for _ in range(2):
        t = bench(lambda: a @ b)
        flops.append(2 * m ** 3 / t)
    del a, b
    bw, mm = max(bws), max(flops)
    RESULTS["ceilings"] = dict(copy_GBps_runs=[x / 1e9 for x in bws], bf16_matmul_TFLOPs_runs=[x / 1e12 for x in flops])
    print(f"  device-to-device copy: {', '.join(f'{x / 1e9:.0f}' for x in bws)} GB/s (two runs)")
    print(f"  bf16 matmul {m}^3:     {', '.join(f'{x / 1e12:.0f}' for x in flops)} TFLOP/s (two runs)")
    return bw, mm


# ---------------------------------------------------------------------------------------------------
# 2. correctness
# ---------------------------------------------------------------------------------------------------
def check_correctness():
    print("== correctness vs torch references (fresh random inputs, NaN-poisoned outputs)")
    dtypes = [torch.float32, torch.float16] if SMOKE else [torch.bfloat16, torch.float16, torch.float32]
    big = not SMOKE
    for dtype in dtypes:
        decode_cases = [(2, 2, 16, 4, [1, 5, 17], None)]
        if big:
            decode_cases += [(32, 8, 128, 16, torch.randint(1, 2049, (64,), generator=GEN).tolist(), None),
                             (32, 32, 128, 16, torch.randint(1, 700, (16,), generator=GEN).tolist(), None),
                             (28, 4, 128, 16, [8191, 3, 1000], 16),
                             (16, 1, 64, 8, torch.randint(1, 300, (9,), generator=GEN).tolist(), 5),
                             (12, 2, 96, 12, [77, 1, 250], 3)]
        for hq, hkv, dim, page, lens, splits in decode_cases:
            k, v, tables, seq_lens = paged_state(lens, page, hkv, dim, dtype)
            q = rand((len(lens), hq, dim), dtype)
            ns = splits or num_kv_splits(len(lens), hkv, max(lens), _sm_count())
            out = paged_decode_attention(q, k, v, tables, seq_lens, dim ** -0.5,
                                         out=torch.full_like(q, float("nan")), num_splits=ns)
            sync()
            ref = paged_decode_attention_ref(q, k, v, tables, seq_lens, dim ** -0.5)
            record_check(f"decode B={len(lens)} Hq={hq} Hkv={hkv} D={dim} page={page} splits={ns}", dtype, out, ref)

        extend_cases = [(4, 2, 32, 4, [(7, 3), (0, 9), (16, 1)], 0)]
        if big:
            extend_cases += [(32, 8, 128, 16, [(0, 1000), (1536, 512), (17, 300), (0, 1)], 0),
                             (32, 32, 128, 16, [(0, 1), (5, 1), (100, 257)], 2),
                             (16, 2, 64, 8, [(3000, 40), (0, 129)], 0)]
        for hq, hkv, dim, page, chunks, first in extend_cases:
            lens = [p + n for p, n in chunks]
            k, v, tables, seq_lens = paged_state(lens, page, hkv, dim, dtype)
            qsl = torch.tensor([0] + [n for _, n in chunks]).cumsum(0).to(torch.int32).to(DEV)
            q = rand((int(qsl[-1]), hq, dim), dtype)
            out = paged_extend_attention(q, k, v, tables, seq_lens, qsl, dim ** -0.5,
                                         max(n for _, n in chunks[first:]), out=torch.full_like(q, float("nan")),
                                         first_seq=first)
            sync()
            ref = paged_extend_attention_ref(q, k, v, tables, seq_lens, qsl, dim ** -0.5, first_seq=first)
            s = int(qsl[first])
            record_check(f"extend Hq={hq} Hkv={hkv} D={dim} chunks={chunks[:3]}", dtype, out[s:], ref[s:])

        rows, hidden = (5, 64) if SMOKE else (300, 4096)
        x, res, w = rand((rows, hidden), dtype, 3.0), rand((rows, hidden), dtype), rand((hidden,), dtype)
        out, new_res = rms_norm(x, w, 1e-5, res, out=torch.full_like(x, float("nan")),
                                residual_out=torch.full_like(x, float("nan")))
        ref, ref_res = ops.rms_norm_ref(x, w, 1e-5, res)
        record_check(f"rms_norm+residual [{rows}, {hidden}]", dtype, out, ref)
        record_check(f"rms_norm residual sum [{rows}, {hidden}]", dtype, new_res, ref_res)
        if DEV.type == "cuda" and not torch.equal(new_res, ref_res):
            print("  FAIL residual sum is not bit-identical to torch's")
            RESULTS["correctness"].append(dict(check="residual bit-exact", ok=False))

        inter = 100 if SMOKE else 11008
        gu = rand((rows, 2 * inter), dtype, 2.0)
        record_check(f"silu_and_mul [{rows}, {inter}]", dtype,
                     silu_and_mul(gu, out=torch.full((rows, inter), float("nan"), dtype=dtype, device=DEV)),
                     ops.silu_and_mul_ref(gu))

        hq, hk, dim = (4, 2, 32) if SMOKE else (32, 8, 128)
        qkv = rand((rows, (hq + 2 * hk) * dim), dtype)
        q, kk = qkv[:, :hq * dim].view(rows, hq, dim), qkv[:, hq * dim:(hq + hk) * dim].view(rows, hk, dim)
        scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                   "original_max_position_embeddings": 8192}
        cos, sin = cos_sin_table(dim, 500000.0, scaling, 131072, 20000, DEV)
        pos = torch.randint(0, 20000, (rows,), generator=GEN).to(DEV)
        nan = dict(fill_value=float("nan"), dtype=dtype, device=DEV)
        got_q, got_k = apply_rope(q, kk, cos[pos], sin[pos], q_out=torch.full((rows, hq, dim), **nan),
                                  k_out=torch.full((rows, hk, dim), **nan))
        ref_q, ref_k = ops.rope_ref(q, kk, cos[pos], sin[pos])
        record_check(f"rope llama3 q [{rows}, {hq}, {dim}]", dtype, got_q, ref_q)
        record_check(f"rope llama3 k [{rows}, {hk}, {dim}]", dtype, got_k, ref_k)

        kc = torch.full((64, 16, hk, dim), float("nan"), dtype=dtype, device=DEV)
        vc = torch.full_like(kc, float("nan"))
        n = min(rows, 200)
        kvv = rand((n, 2, hk, dim), dtype)
        slots = torch.randperm(64 * 16, generator=GEN)[:n].to(DEV)
        slots[0] = -1
        rk, rv = kc.clone(), vc.clone()
        kv_write(kvv[:, 0], kvv[:, 1], kc, vc, slots)
        kv_write_ref(kvv[:, 0], kvv[:, 1], rk, rv, slots)
        sync()
        same = all(torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
                   for a, b in ((kc, rk), (vc, rv)))
        RESULTS["correctness"].append(dict(check=f"kv_write [{n}, {hk}, {dim}]", dtype=str(dtype), ok=same))
        print(f"  {'ok  ' if same else 'FAIL'} kv_write [{n}, {hk}, {dim}] bit-exact, pad slot untouched  {dtype}")

    # the whole backend against the torch backend on a mixed step
    dtype = torch.bfloat16 if not SMOKE else torch.float32
    hq, hkv, dim, page = (32, 8, 128, 16) if big else (4, 2, 16, 4)
    chunks = [(100, 1), (2000, 1), (0, 1), (0, 300), (900, 77)] if big else [(6, 1), (0, 5), (9, 3)]
    lens = [p + n for p, n in chunks]
    k, v, tables, seq_lens = paged_state(lens, page, hkv, dim, dtype)
    k, v = k.nan_to_num(), v.nan_to_num()     # the torch backend multiplies masked-out V by zero
    slots = []
    for (p, n), row in zip(chunks, tables.tolist()):
        slots += [row[t // page] * page + t % page for t in range(p, p + n)]
    ql = [n for _, n in chunks]
    num_decodes = next(i for i, n in enumerate(ql + [0]) if n != 1)      # leading one-token chunks
    meta = AttentionMetadata(torch.tensor(slots, device=DEV), torch.tensor([0] + ql).cumsum(0).to(torch.int32).to(DEV),
                             seq_lens, tables, num_decodes, max(ql), max(lens), ql, lens)
    total = sum(ql)
    q, kn, vn = rand((total, hq, dim), dtype), rand((total, hkv, dim), dtype), rand((total, hkv, dim), dtype)
    k2, v2 = k.clone(), v.clone()
    out = TritonAttention().forward(q, kn, vn, k, v, meta, dim ** -0.5)
    ref = TorchAttention().forward(q, kn, vn, k2, v2, meta, dim ** -0.5)
    sync()
    record_check("TritonAttention vs TorchAttention, mixed decode/prefill step", dtype, out, ref)


def _sm_count() -> int:
    return torch.cuda.get_device_properties(DEV).multi_processor_count if DEV.type == "cuda" else 4


# ---------------------------------------------------------------------------------------------------
# 3. kernel timings
# ---------------------------------------------------------------------------------------------------
def time_kernels(bw: float, mm: float):
    print("== kernel timings (median; bandwidth vs the measured copy)")
    dtype = torch.bfloat16 if not SMOKE else torch.float32
    es = torch.tensor([], dtype=dtype).element_size()
    page = 16
    decode_cases = [("headline GQA", 64, 2048, 32, 8, 128), ("headline MHA (Llama-2-7B heads)", 64, 2048, 32, 32, 128),
                    ("long context, batch 1", 1, 32768, 32, 8, 128), ("batch 8, ctx 4096", 8, 4096, 32, 8, 128),
                    ("head_dim 64", 64, 2048, 32, 8, 64)]
    if SMOKE:
        decode_cases = [("smoke", 2, 40, 4, 2, 16)]
    headline = {}
    for label, batch, ctx, hq, hkv, dim in decode_cases:
        k, v, tables, seq_lens = dense_state(batch, ctx, page, hkv, dim, dtype)
        q = rand((batch, hq, dim), dtype)
        out = torch.empty_like(q)
        nbytes = 2 * batch * ctx * hkv * dim * es + 2 * batch * hq * dim * es + tables.numel() * 4
        auto = num_kv_splits(batch, hkv, ctx, _sm_count())
        variants = [dict(num_splits=auto)]
        if not SMOKE:
            variants += [dict(num_splits=s, block_n=bn, num_warps=w)
                         for s in sorted({1, auto, 2 * auto}) for bn in (32, 64, 128) for w in (4, 8)
                         if not (s == auto and bn == 64 and w == 4)]
            if hq == hkv:      # MHA: padded tensor-core tiles vs the default broadcast-multiply path
                variants += [dict(num_splits=auto, block_n=bn, use_dot=True) for bn in (32, 64, 128)]
        rows = []
        for var in variants:
            try:
                t = bench(lambda: paged_decode_attention(q, k, v, tables, seq_lens, dim ** -0.5, out=out, **var))
            except Exception as e:   # a variant that does not compile (e.g. too much shared memory)
                print(f"  skipped {var}: {type(e).__name__}")
                continue
            rows.append((t, var))
        t_auto = rows[0][0]
        t_auto2 = bench(lambda: paged_decode_attention(q, k, v, tables, seq_lens, dim ** -0.5, out=out, **variants[0]))
        best_t, best_var = min(rows, key=lambda r: r[0])
        name = f"decode attn {label}: B={batch} ctx={ctx} Hq={hq} Hkv={hkv} D={dim}"
        row = record_time(name + f" [default, splits={auto}]", t_auto, nbytes, ceiling_bw=bw,
                          second_run_us=t_auto2 * 1e6)
        record_time(name + f" [best {best_var}]", best_t, nbytes, ceiling_bw=bw)
        if label.startswith("headline"):
            headline[label] = row
        ref_backend = TorchAttention()
        if not SMOKE and batch * ctx * hkv <= 64 * 2048 * 8:
            meta = AttentionMetadata(torch.zeros(batch, dtype=torch.long, device=DEV),
                                     torch.arange(batch + 1, dtype=torch.int32, device=DEV), seq_lens, tables,
                                     batch, 1, ctx, [1] * batch, [ctx] * batch)
            t_ref = bench(lambda: ref_backend._decode(q, k, v, meta, dim ** -0.5))
            record_time(name + " [torch SDPA reference backend]", t_ref, nbytes, ceiling_bw=bw)
        del k, v
    RESULTS["decode_headline"] = headline

    ext_cases = [("prefill 1 x 4096", [(0, 4096)], 32, 8, 128),
                 ("4 chunks of 512 over 1536 cached", [(1536, 512)] * 4, 32, 8, 128)]
    if SMOKE:
        ext_cases = [("smoke", [(0, 20), (9, 7)], 4, 2, 16)]
    for label, chunks, hq, hkv, dim in ext_cases:
        lens = [p + n for p, n in chunks]
        k, v, tables, _ = dense_state(len(chunks), max(lens), page, hkv, dim, dtype)
        seq_lens = torch.tensor(lens, dtype=torch.int32, device=DEV)
        qsl = torch.tensor([0] + [n for _, n in chunks]).cumsum(0).to(torch.int32).to(DEV)
        q = rand((int(qsl[-1]), hq, dim), dtype)
        out = torch.empty_like(q)
        visible = sum(sum(p + j + 1 for j in range(n)) for p, n in chunks)
        flops = 4 * hq * dim * visible
        max_q = max(n for _, n in chunks)
        t = bench(lambda: paged_extend_attention(q, k, v, tables, seq_lens, qsl, dim ** -0.5, max_q, out=out))
        record_time(f"extend attn {label}: Hq={hq} Hkv={hkv} D={dim}", t, flops=flops, ceiling_flops=mm)

    tokens, hidden, inter = (8, 64, 100) if SMOKE else (4096, 4096, 14336)
    for t_rows in ((1, tokens) if not SMOKE else (tokens,)):
        x, res, w = rand((t_rows, hidden), dtype), rand((t_rows, hidden), dtype), rand((hidden,), dtype)
        record_time(f"rms_norm+residual [{t_rows}, {hidden}]", bench(lambda: rms_norm(x, w, 1e-5, res)),
                    4 * t_rows * hidden * es + hidden * es, ceiling_bw=bw)
        record_time(f"  torch reference [{t_rows}, {hidden}]", bench(lambda: ops.rms_norm_ref(x, w, 1e-5, res)),
                    4 * t_rows * hidden * es + hidden * es, ceiling_bw=bw)
    gu = rand((tokens, 2 * inter), dtype)
    silu_bytes = 3 * tokens * inter * es
    record_time(f"silu_and_mul [{tokens}, {inter}]", bench(lambda: silu_and_mul(gu)), silu_bytes, ceiling_bw=bw)
    record_time(f"  torch reference [{tokens}, {inter}]", bench(lambda: ops.silu_and_mul_ref(gu)), silu_bytes,
                ceiling_bw=bw)
    hq, hk, dim = (4, 2, 16) if SMOKE else (32, 8, 128)
    qkv = rand((tokens, (hq + 2 * hk) * dim), dtype)
    q, kk = qkv[:, :hq * dim].view(tokens, hq, dim), qkv[:, hq * dim:(hq + hk) * dim].view(tokens, hk, dim)
    cos, sin = cos_sin_table(dim, 10000.0, None, 8192, 8192, DEV)
    pos = torch.randint(0, 8192, (tokens,), generator=GEN).to(DEV)
    c, s = cos[pos], sin[pos]
    rope_bytes = 2 * tokens * (hq + hk) * dim * es + 2 * tokens * dim * 4
    record_time(f"rope q+k [{tokens}, {hq}+{hk}, {dim}]", bench(lambda: apply_rope(q, kk, c, s)), rope_bytes,
                ceiling_bw=bw)
    record_time("  torch reference", bench(lambda: ops.rope_ref(q, kk, c, s)), rope_bytes, ceiling_bw=bw)
    nb = -(-tokens // 16) + 1
    kc, vc = rand((nb, 16, hk, dim), dtype), rand((nb, 16, hk, dim), dtype)
    slots = torch.randperm(nb * 16, generator=GEN)[:tokens].to(DEV)
    vv = qkv[:, (hq + hk) * dim:].view(tokens, hk, dim)
    record_time(f"kv_write [{tokens}, {hk}, {dim}]", bench(lambda: kv_write(kk, vv, kc, vc, slots)),
                4 * tokens * hk * dim * es, ceiling_bw=bw)


# ---------------------------------------------------------------------------------------------------
# 4. Llama-2-7B-shaped decode step
# ---------------------------------------------------------------------------------------------------
def llama2_7b_config() -> ModelConfig:
    if SMOKE:
        return ModelConfig("LlamaForCausalLM", 256, 64, 128, 2, 4, 4, 16, 1e-5, 10000.0, None, 512,
                           False, False, False, False, False, None)
    return ModelConfig(architecture="LlamaForCausalLM", vocab_size=32000, hidden_size=4096,
                       intermediate_size=11008, num_layers=32, num_heads=32, num_kv_heads=32, head_dim=128,
                       rms_norm_eps=1e-5, rope_theta=10000.0, rope_scaling=None, max_position_embeddings=4096,
                       qkv_bias=False, o_bias=False, mlp_bias=False, qk_norm=False, tie_word_embeddings=False,
                       sliding_window=None)


@torch.inference_mode()
def time_model(bw: float):
    print("== Llama-2-7B-shaped model, random bf16 weights, batch-1 decode step")
    cfg = llama2_7b_config()
    dtype = torch.bfloat16 if not SMOKE else torch.float32
    model = build_model(cfg, DEV, dtype)
    for p in model.parameters():
        p.normal_(0.0, 0.02)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.fill_(1.0).add_(rand(p.shape, dtype, 0.05))
    page = 16
    backend = TritonAttention()
    ops.use_triton_on_cpu(SMOKE)
    embed_bytes = model.model.embed_tokens.weight.numel() * model.model.embed_tokens.weight.element_size()
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    weight_read = param_bytes - embed_bytes + cfg.hidden_size * dtype.itemsize     # one embedding row is read
    cos, sin = cos_sin_table(cfg.head_dim, cfg.rope_theta, None, cfg.max_position_embeddings,
                             cfg.max_position_embeddings + 1, DEV)
    out = {"param_bytes": param_bytes, "weight_bytes_read_per_step": weight_read}
    for ctx in ((128, 2048) if not SMOKE else (20,)):
        nblocks = -(-ctx // page)
        kv = rand((cfg.num_layers, 2, nblocks + 1, page, cfg.num_kv_heads, cfg.head_dim), dtype)
        kv_read = 2 * cfg.num_layers * ctx * cfg.num_kv_heads * cfg.head_dim * dtype.itemsize

        def make_context(meta, c, s, kv=kv):
            return ForwardContext(meta, kv, backend, c, s)

        common = dict(block_size=page, max_model_len=cfg.max_position_embeddings, max_batch_size=1,
                      scratch_block=nblocks, device=DEV)
        eager = DecodeGraphs(model, make_context, cos, sin, **common)
        graphs = DecodeGraphs(model, make_context, cos, sin, **common)
        if DEV.type == "cuda":
            graphs.capture()
        step_args = ([123], [ctx - 1], [1], [ctx], [list(range(nblocks))])

        def step(g):
            hidden = g.run(step_args[0], torch.tensor(step_args[1]).numpy(), *step_args[2:])
            return model.compute_logits(hidden)

        logits_graph, logits_eager = step(graphs), step(eager)
        sync()
        err = rel_err(logits_graph, logits_eager)
        t_graph = bench(lambda: step(graphs))
        t_graph2 = bench(lambda: step(graphs))
        t_replay = bench(lambda: graphs.graphs[1].replay()) if DEV.type == "cuda" else float("nan")
        t_eager = bench(lambda: step(eager))
        roof_w = weight_read / bw
        roof_wkv = (weight_read + kv_read) / bw
        r = dict(ctx=ctx, graph_vs_eager_logits_rel_err=err, step_graph_us=t_graph * 1e6,
                 step_graph_us_2nd=t_graph2 * 1e6, replay_only_us=t_replay * 1e6, step_eager_us=t_eager * 1e6,
                 roofline_weights_us=roof_w * 1e6, roofline_weights_kv_us=roof_wkv * 1e6,
                 pct_of_weight_roofline=100 * roof_w / t_graph, pct_of_weight_kv_roofline=100 * roof_wkv / t_graph)
        out[f"ctx{ctx}"] = r
        print(f"  ctx {ctx}: graph step {t_graph * 1e6:.0f} / {t_graph2 * 1e6:.0f} us (two runs), replay only "
              f"{t_replay * 1e6:.0f} us, eager {t_eager * 1e6:.0f} us; weight roofline {roof_w * 1e6:.0f} us "
              f"-> {r['pct_of_weight_roofline']:.1f}%  (weights+KV {r['pct_of_weight_kv_roofline']:.1f}%); "
              f"graph vs eager logits rel err {err:.1e}", flush=True)
        del kv, eager, graphs
    RESULTS["model"] = out
    ops.use_triton_on_cpu(False)
    del model
    if DEV.type == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------
def summary(bw: float):
    print("\n================ summary ================")
    env = RESULTS["env"]
    print(f"device {env['device']}  torch {env['torch']}  triton {env['triton']}")
    print(f"measured copy bandwidth {bw / 1e9:.0f} GB/s")
    bad = [c for c in RESULTS["correctness"] if not c["ok"]]
    print(f"correctness: {len(RESULTS['correctness']) - len(bad)}/{len(RESULTS['correctness'])} checks pass"
          + ("" if not bad else "  FAILED: " + "; ".join(c["check"] for c in bad)))
    print(f"{'what':<66}{'us':>10}{'GB/s':>8}{'%bw':>7}")
    for row in RESULTS["timings"]:
        gb = f"{row['GBps']:8.0f}" if "GBps" in row else " " * 8
        pct = (f"{row['pct_bw']:7.1f}" if "pct_bw" in row else
               f"{row['pct_flops']:6.1f}m" if "pct_flops" in row else "")
        print(f"{row['name'][:65]:<66}{row['us']:10.1f}{gb}{pct}")
    for label, row in RESULTS.get("decode_headline", {}).items():
        verdict = "PASS" if row["pct_bw"] >= 80 else "MISS"
        print(f"target decode attention {label} >= 80% bw: {row['pct_bw']:.1f}%  {verdict}")
    for key, r in RESULTS["model"].items():
        if key.startswith("ctx"):
            verdict = "PASS" if r["pct_of_weight_roofline"] >= 85 else "MISS"
            print(f"target 7B batch-1 decode step ({key}) >= 85% of weight roofline: "
                  f"{r['pct_of_weight_roofline']:.1f}%  {verdict}  "
                  f"({r['step_graph_us']:.0f} us vs {r['roofline_weights_us']:.0f} us)")


def main():
    global SMOKE, DEV
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on CPU under the Triton interpreter")
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_check.json")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: correctness,kernels,model")
    args = ap.parse_args()
    SMOKE = args.cpu_smoke
    if not SMOKE and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device here (use --cpu-smoke to exercise the script on CPU)")
    DEV = torch.device("cpu" if SMOKE else "cuda")
    skip = set(filter(None, args.skip.split(",")))
    RESULTS["env"] = dict(device=torch.cuda.get_device_name() if DEV.type == "cuda" else "cpu (interpreter smoke run)",
                          torch=torch.__version__, triton=triton.__version__,
                          sms=_sm_count(), seed=GEN.initial_seed())
    print(f"gpu_check on {RESULTS['env']['device']}, torch {torch.__version__}, triton {triton.__version__}, "
          f"seed {GEN.initial_seed()}", flush=True)
    bw, mm = measure_ceilings()
    sections = [("correctness", check_correctness), ("kernels", lambda: time_kernels(bw, mm)),
                ("model", lambda: time_model(bw))]
    for name, fn in sections:
        if name in skip:
            continue
        try:
            fn()
            sync()
        except Exception as e:       # keep the other sections' numbers; report the failure plainly
            import traceback
            traceback.print_exc()
            RESULTS.setdefault("errors", []).append(f"{name}: {type(e).__name__}: {e}")
            print(f"  SECTION {name} FAILED: {type(e).__name__}: {e}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(RESULTS, indent=1, default=str))
    summary(bw)
    if RESULTS.get("errors") or any(not c["ok"] for c in RESULTS["correctness"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
