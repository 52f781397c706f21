"""Where a decode step's time goes, against what memory bandwidth allows.

    python scripts/profile_decode.py --model /path/to/hf-folder [--batch 1] [--context 256] [--steps 64]
    python scripts/profile_decode.py --bandwidth-only

1. Memory read bandwidth of this machine: a 512 MB fp32 sum, on one thread and on all (from the
   main thread, and from a second thread, which is where the engine runs).
2. The engine's decode step for `--batch` sequences of `--context` tokens, timed by wrapping the
   pieces it is made of (engine thread, as in serving): the four GEMMs per layer, attention, the
   small per-layer ops (RMSNorm, RoPE, SiLU*mul), the LM head, the whole forward, sampling and the
   engine's own bookkeeping. "other" inside the forward is Python and dispatch between the pieces
   (embedding, views, residual glue).
3. Bytes a step must read (weights incl. the LM head, plus the KV context) and the step time they
   would take at the measured bandwidth.

Pieces are timed with perf_counter around each call; that costs ~0.3 us per call, about 1% here.
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
        fn = getattr(obj, attr)

        def timed(*a, **kw):
            with self.time(key):
                return fn(*a, **kw)
        setattr(obj, attr, timed)


def instrument(llm, timers: Timers) -> None:
    """Wrap the pieces of the engine's step (instance attributes shadow the methods)."""
    from nbinfer.models import llama

    engine = llm.engine
    runner = engine.runner
    model = runner.model
    for layer in model.model.layers:
        for name, mod in (("qkv_proj", layer.self_attn.qkv_proj), ("o_proj", layer.self_attn.o_proj),
                          ("gate_up_proj", layer.mlp.gate_up_proj), ("down_proj", layer.mlp.down_proj)):
            timers.wrap(mod, "forward", f"gemm {name}")
    timers.wrap(runner.backend, "forward", "attention")
    for name in ("rms_norm", "apply_rope", "silu_and_mul"):
        timers.wrap(llama.ops, name, f"small {name}")
    timers.wrap(model, "compute_logits", "lm head")
    timers.wrap(model, "forward", "forward")
    timers.wrap(runner, "run", "runner.run")
    timers.wrap(engine, "sampler", "sampling")
    timers.wrap(engine, "_step", "step")


def profile(model: str, batch: int, context: int, steps: int, dtype: str) -> dict:
    from nbinfer import LLM, SamplingParams

    llm = LLM(model, dtype=dtype)
    cfg = llm.engine.model_config
    vocab = cfg.vocab_size
    g = torch.Generator().manual_seed(0)
    prompts = [{"prompt_token_ids": torch.randint(10, vocab, (context,), generator=g).tolist()} for _ in range(batch)]
    params = SamplingParams(temperature=0, max_tokens=steps + 1, ignore_eos=True)
    # warm-up; it also leaves the prompts' full blocks in the prefix cache, so the timed run's first
    # step prefills only the last partial block and nearly every timed step is a decode step
    llm.generate(prompts, SamplingParams(temperature=0, max_tokens=8, ignore_eos=True))
    timers = Timers()
    instrument(llm, timers)
    t0 = time.perf_counter()
    outs = llm.generate(prompts, params)
    wall = time.perf_counter() - t0
    first = max(o.metrics.first_token_time for o in outs)
    last = max(o.metrics.finished_time for o in outs)
    step_ms = (last - first) / steps * 1e3
    runner = llm.engine.runner
    kv_token = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * runner.dtype.itemsize
    embed = cfg.vocab_size * cfg.hidden_size * runner.dtype.itemsize
    weights = runner.weights_bytes + (embed if cfg.tie_word_embeddings else 0)   # tied: read as the LM head too
    result = {"timers": timers, "step_ms": step_ms, "wall": wall, "weights_bytes": weights,
              "kv_bytes": int(batch * (context + steps / 2) * kv_token), "calls_steps": timers.calls["step"],
              "layers": cfg.num_layers, "threads": torch.get_num_threads()}
    llm.shutdown()
    return result


def report(r: dict, bw_all: float) -> str:
    t, n = r["timers"], r["calls_steps"]
    per = {k: v / n * 1e3 for k, v in t.total.items()}          # ms per step (prefill step included in n)
    fwd = per.get("forward", 0.0)
    inside = sum(v for k, v in per.items() if k.startswith(("gemm", "small")) or k == "attention")
    lines = [f"decode step: {r['step_ms']:.2f} ms measured between tokens ({1e3 / r['step_ms']:.1f} tok/s), "
             f"{r['threads']} torch threads",
             "| piece | ms/step | share of step | calls/step |", "|---|---|---|---|"]
    step = per.get("step", r["step_ms"])
    rows = sorted(((k, v) for k, v in per.items() if k not in ("step", "runner.run", "forward")), key=lambda kv: -kv[1])
    rows += [("forward: other (Python, dispatch, embedding, glue)", fwd - inside),
             ("runner.run outside forward + LM head (metadata, inputs)", per.get("runner.run", 0) - fwd - per.get("lm head", 0)),
             ("step outside runner.run and sampling (schedule, postprocess)",
              step - per.get("runner.run", 0) - per.get("sampling", 0))]
    for k, v in rows:
        lines.append(f"| {k} | {v:.2f} | {v / step:.0%} | {t.calls.get(k, 0) / n:.0f} |")
    lines.append(f"| **step** | {step:.2f} | 100% | 1 |")
    need = r["weights_bytes"] + r["kv_bytes"]
    lines.append(f"\nbytes a step reads: {r['weights_bytes'] / 1e6:.0f} MB weights (LM head included) + "
                 f"{r['kv_bytes'] / 1e6:.1f} MB KV = {need / 1e6:.0f} MB; at {bw_all / 1e9:.1f} GB/s that is "
                 f"{need / bw_all * 1e3:.2f} ms/step ({bw_all / need:.1f} tok/s); measured "
                 f"{need / (r['step_ms'] / 1e3) / 1e9:.1f} GB/s effective")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--context", type=int, default=256)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--bandwidth-only", action="store_true")
    args = p.parse_args()
    n = torch.get_num_threads()
    bws = {f"{k} thread(s), {'engine-like thread' if other else 'main thread'}": read_bandwidth(k, other_thread=other)
           for k in sorted({1, n}) for other in (False, True)}
    for k, v in bws.items():
        print(f"read bandwidth, {k}: {v / 1e9:.1f} GB/s")
    if args.bandwidth_only or not args.model:
        return
    r = profile(args.model, args.batch, args.context, args.steps, args.dtype)
    print(report(r, max(bws.values())))


if __name__ == "__main__":
    main()
