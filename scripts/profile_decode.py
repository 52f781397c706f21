"""Where the engine's time goes on a workload, against what memory bandwidth and arithmetic allow.

    python scripts/profile_decode.py --bandwidth-only
    python scripts/profile_decode.py --model DIR --workload single [--torch-path]
    python scripts/profile_decode.py --model DIR --workload batch [--torch-path]

1. Memory read bandwidth: a 512 MB fp32 sum on one thread and on all, from the main thread and from
   a second thread (the engine runs on one), and fp32 GEMM GFLOP/s (one large matmul, all threads).
2. The workload (bench's `single` or `batch`, greedy, EOS ignored) through the engine, every piece of
   a step timed by wrapping it: GEMMs (by rows: decode-sized or prefill-sized), attention (decode-only
   steps or steps with prefill), the small per-layer ops (RMSNorm, RoPE, SiLU*mul), the LM head, the
   C++ step (kernels/cpu_llama.py, the whole model for every step on a CPU), sampling, the
   scheduler; "forward: other" is Python and dispatch between the pieces. --torch-path turns the
   C++ step off (the engine as it was before it).
3. single: ms per decode step, and the bytes a step must read (weights incl. the LM head, plus KV)
   at the measured bandwidth. batch: seconds per piece over the run and the FLOPs it must do.

Wrapping costs ~0.3 us per call (about 1% of a step).
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections import defaultdict
from contextlib import contextmanager

import torch


def read_bandwidth(threads: int, nbytes: int = 512 << 20, reps: int = 7, other_thread: bool = False) -> float:
    """Bytes/s of torch.sum over a buffer much larger than the caches (median of reps)."""
    x = torch.ones(nbytes // 4)
    out = {}

    def run():
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        x.sum()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            x.sum()
            times.append(time.perf_counter() - t)
        torch.set_num_threads(previous)
        out["s"] = statistics.median(times)

    if other_thread:
        th = threading.Thread(target=run)
        th.start()
        th.join()
    else:
        run()
    return nbytes / out["s"]


def gemm_flops(m: int = 2048, k: int = 576, n: int = 3072, reps: int = 10) -> float:
    a, w = torch.randn(m, k), torch.randn(n, k)
    torch.nn.functional.linear(a, w)
    t = time.perf_counter()
    for _ in range(reps):
        torch.nn.functional.linear(a, w)
    return 2 * m * k * n * reps / (time.perf_counter() - t)


class Timers:
    def __init__(self):
        self.total = defaultdict(float)
        self.calls = defaultdict(int)

    @contextmanager
    def time(self, key):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.total[key] += time.perf_counter() - t
            self.calls[key] += 1

    def wrap(self, obj, attr, key):
        """Replace obj.attr by a timed call; key may be a function of the call's arguments."""
        fn = getattr(obj, attr)

        def timed(*a, **kw):
            with self.time(key(*a, **kw) if callable(key) else key):
                return fn(*a, **kw)
        setattr(obj, attr, timed)


def instrument(llm, timers: Timers) -> None:
    """Wrap the pieces of the engine's step (instance attributes shadow the methods)."""
    from nbinfer.models import llama

    engine = llm.engine
    runner = engine.runner
    model = runner.model

    def rows(x, *a, **kw):
        return "decode-sized (<= 64 rows)" if x.shape[0] <= 64 else "prefill-sized"

    for layer in model.model.layers:
        for name, mod in (("qkv", layer.self_attn.qkv_proj), ("o", layer.self_attn.o_proj),
                          ("gate_up", layer.mlp.gate_up_proj), ("down", layer.mlp.down_proj)):
            timers.wrap(mod, "forward", lambda x, name=name: f"gemm {name}, {rows(x)}")
    timers.wrap(runner.backend, "forward",
                lambda q, k, v, kc, vc, meta, scale: "attention, " + ("decode-only step" if meta.num_decodes == meta.num_seqs
                                                                      else "step with prefill"))
    for name in ("rms_norm", "apply_rope", "silu_and_mul"):
        timers.wrap(llama.ops, name, f"small op {name}")
    timers.wrap(model, "compute_logits", "lm head")
    timers.wrap(model, "forward", "forward")
    if isinstance(runner.cpu_step, _Call):
        timers.wrap(runner.cpu_step, "run", "C++ step (whole model + LM head)")
    timers.wrap(runner, "run", "runner.run")
    timers.wrap(engine, "sampler", "sampling")
    timers.wrap(engine.scheduler, "schedule", "scheduler")
    timers.wrap(engine, "_step", "step")


class _Call:
    """Stands in for the C++ step: calls go through .run, an attribute the timers can wrap (a call
    looks __call__ up on the type, where an instance attribute would not be seen)."""

    def __init__(self, step):
        self.run = step.__call__

    def __call__(self, *a):
        return self.run(*a)


def run_workload(model: str, workload: str, dtype: str, torch_path: bool) -> dict:
    from nbinfer import LLM, SamplingParams
    from nbinfer.bench.workloads import make_workload

    llm = LLM(model, dtype=dtype)
    runner = llm.engine.runner
    step = runner.cpu_step
    if torch_path:
        runner.cpu_step = None
    elif runner.cpu_step is not None:
        runner.cpu_step = _Call(runner.cpu_step)
    cfg = llm.engine.model_config
    wl = make_workload(workload, 32, cfg.vocab_size, seed=0)
    params = [SamplingParams(temperature=0, max_tokens=n, ignore_eos=True) for n in wl.output_lens]
    prompts = [{"prompt_token_ids": p} for p in wl.prompts]
    warm = make_workload(workload, 4, cfg.vocab_size, seed=1, scale=0.1)
    llm.generate([{"prompt_token_ids": p} for p in warm.prompts], SamplingParams(temperature=0, max_tokens=4))
    if workload == "single":
        # leave the prompt's full blocks in the prefix cache: the timed run's first step prefills only
        # the last partial block, so nearly every timed step is a decode step
        llm.generate(prompts, SamplingParams(temperature=0, max_tokens=1))
    else:
        llm.reset_prefix_cache()
    timers = Timers()
    instrument(llm, timers)
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params)
    wall = time.perf_counter() - t0
    out = {"timers": timers, "wall": wall, "workload": wl, "cfg": cfg, "threads": torch.get_num_threads(),
           "weights_bytes": runner.weights_bytes, "itemsize": runner.dtype.itemsize,
           "cpu_step": runner.cpu_step is not None,
           "ttft": statistics.median(o.metrics.first_token_time for o in outs) - t0 if workload != "single" else None}
    if workload == "single":
        m = outs[0].metrics
        out["step_ms"] = (m.finished_time - m.first_token_time) / (len(outs[0].outputs[0].token_ids) - 1) * 1e3
    runner.cpu_step = step
    llm.shutdown()
    return out


def _rows(r: dict, unit: float, denom: float) -> list[str]:
    t, steps = r["timers"], r["timers"].calls["step"]
    per = {k: v * unit for k, v in t.total.items()}
    inside = sum(v for k, v in per.items() if k.startswith(("gemm", "small", "attention")))
    derived = [("forward: other (Python, dispatch, embedding, glue)", per.get("forward", 0) - inside),
               ("runner.run outside the forward, LM head and C++ step (inputs, metadata)",
                per.get("runner.run", 0) - per.get("forward", 0) - per.get("lm head", 0)
                - sum(v for k, v in per.items() if k.startswith("C++"))),
               ("step outside runner.run, sampling, scheduler (postprocess, streaming)",
                per.get("step", 0) - per.get("runner.run", 0) - per.get("sampling", 0) - per.get("scheduler", 0))]
    lines = []
    for k, v in sorted(((k, v) for k, v in per.items() if k not in ("step", "runner.run", "forward")),
                       key=lambda kv: -kv[1]) + derived:
        lines.append(f"| {k} | {v:.2f} | {v / denom:.0%} | {t.calls.get(k, 0) / steps:.1f} |")
    return lines


def report(r: dict, bw: float, flops: float) -> str:
    t, cfg, wl = r["timers"], r["cfg"], r["workload"]
    steps = t.calls["step"]
    path = "C++ step on" if r["cpu_step"] else "torch path (C++ step off)"
    if wl.name == "single":
        step = t.total["step"] / steps * 1e3
        lines = [f"single: decode {r['step_ms']:.2f} ms/token between tokens ({1e3 / r['step_ms']:.1f} tok/s), "
                 f"{path}, {r['threads']} threads, {steps} steps",
                 "| piece | ms/step | share | calls/step |", "|---|---|---|---|"]
        lines += _rows(r, 1e3 / steps, step)
        lines.append(f"| **step (engine)** | {step:.2f} | 100% | 1 |")
        kv = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * r["itemsize"] * (len(wl.prompts[0]) + 128)
        need = r["weights_bytes"] + kv
        lines.append(f"\nbytes a decode step reads: {r['weights_bytes'] / 1e6:.0f} MB weights (the tied LM head "
                     f"counted once) + {kv / 1e6:.1f} MB KV = {need / 1e6:.0f} MB; at {bw / 1e9:.1f} GB/s that is "
                     f"{need / bw * 1e3:.1f} ms ({bw / need:.0f} tok/s); measured {need / r['step_ms'] * 1e3 / 1e9:.1f} "
                     "GB/s effective")
        return "\n".join(lines)
    total = t.total["step"]
    lines = [f"{wl.name}: {len(wl.prompts)} requests, {wl.input_tokens:,} in / {wl.output_tokens:,} out, wall "
             f"{r['wall']:.1f} s ({wl.output_tokens / r['wall']:.1f} out tok/s), TTFT p50 {r['ttft']:.2f} s, {path}, "
             f"{r['threads']} threads, {steps} steps", "| piece | s | share | calls/step |", "|---|---|---|---|"]
    lines += _rows(r, 1.0, total)
    lines.append(f"| **steps (engine)** | {total:.2f} | 100% | 1 |")
    head = cfg.vocab_size * cfg.hidden_size               # the LM head (= the embedding when tied)
    body = r["weights_bytes"] / r["itemsize"] - head * (1 if cfg.tie_word_embeddings else 2)
    need = 2 * body * (wl.input_tokens + wl.output_tokens) + 2 * head * wl.output_tokens   # one head row per sample
    lines.append(f"\nFLOPs the run must do (matmuls, attention excluded): {need / 1e12:.2f} TFLOP; at the measured "
                 f"{flops / 1e9:.0f} GFLOP/s (one 2048x576x3072 matmul, all threads) that is {need / flops:.1f} s")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--workload", default="single", choices=["single", "batch"])
    p.add_argument("--dtype", default="float32")
    p.add_argument("--torch-path", action="store_true", help="turn the C++ step off (the engine before it)")
    p.add_argument("--bandwidth-only", action="store_true")
    args = p.parse_args()
    n = torch.get_num_threads()
    bws = {(k, other): read_bandwidth(k, other_thread=other) for k in sorted({1, n}) for other in (False, True)}
    for (k, other), v in bws.items():
        print(f"read bandwidth, {k} thread(s) from the {'second' if other else 'main'} thread: {v / 1e9:.1f} GB/s")
    flops = gemm_flops()
    print(f"fp32 GEMM 2048x576x3072, {n} threads: {flops / 1e9:.0f} GFLOP/s")
    if args.bandwidth_only or not args.model:
        return
    r = run_workload(args.model, args.workload, args.dtype, args.torch_path)
    print(report(r, max(bws.values()), flops))


if __name__ == "__main__":
    main()
