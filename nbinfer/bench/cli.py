"""`nbinfer bench`: one workload, nbinfer and HF transformers side by side, medians of repetitions."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from .workloads import WORKLOADS


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", help="local model folder or hub id (real weights)")
    src.add_argument("--shape", default=None,
                     help="random-weight model of a named shape: tiny, Qwen2.5-0.5B, Llama-2-7B, Llama-3-8B "
                          "(default: tiny on CPU, Llama-2-7B on CUDA)")
    p.add_argument("--workload", default="mixed", choices=sorted(WORKLOADS),
                   help="; ".join(f"{k}: {v}" for k, v in WORKLOADS.items()))
    p.add_argument("--num-prompts", type=int, default=None, help="requests per run (default: 32 CPU, 256 CUDA)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every length (quick runs: 0.25)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions (medians are reported)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--hf", dest="hf", action="store_true", default=True, help="also run HF generate (default)")
    p.add_argument("--no-hf", dest="hf", action="store_false", help="skip HF generate")
    p.add_argument("--hf-batch-size", type=int, default=None, help="HF batch size (default: all in one padded batch)")
    p.add_argument("--no-roofline", dest="roofline", action="store_false", default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")


def run(args) -> int:
    result = run_bench(**{k: v for k, v in vars(args).items() if k != "command"}, log=print)
    print()
    print(result["table"])
    if result.get("roofline_table"):
        print()
        print(result["roofline_table"])
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in result.items() if k != "summaries"}, indent=2, default=str))
    return 0


def run_bench(model=None, shape=None, workload="mixed", num_prompts=None, scale=1.0, reps=3, device="auto",
              dtype="auto", max_num_seqs=256, hf=True, hf_batch_size=None, roofline=True, seed=0,
              json=None, log=print) -> dict:
    """Run the benchmark; returns {"summaries", "table", "ratio", ...}. Also used by %nbinfer bench."""
    import torch

    from nbinfer import LLM
    from nbinfer.engine.resolved import resolve_device, resolve_dtype

    from .metrics import Summary
    from .report import roofline_table, table
    from .shapes import make_model_dir
    from .systems import load_hf, run_hf_best_effort, run_nbinfer
    from .workloads import make_workload

    if reps < 1:
        raise ValueError("--reps must be >= 1")
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    torch_dtype = resolve_dtype(dtype, dev)
    dummy = model is None
    if dummy:
        shape = shape or ("Llama-2-7B" if cuda else "tiny")
        model_dir = make_model_dir(shape, Path(tempfile.gettempdir()) / "nbinfer-bench-shapes")
        label = f"{shape} (random weights)"
    else:
        model_dir, label = model, str(model)
    num_prompts = num_prompts or (256 if cuda else 32)

    llm = LLM(str(model_dir), dtype=str(torch_dtype).replace("torch.", ""), device=str(dev),
              load_format="dummy" if dummy else "auto", max_num_seqs=max_num_seqs, seed=seed)
    vocab = llm.engine.model_config.vocab_size
    wl = make_workload(workload, num_prompts, vocab, seed=seed, scale=scale)
    log(f"nbinfer bench: {label}, {dev}, {str(torch_dtype).replace('torch.', '')}, workload {workload} "
        f"({num_prompts} requests, {wl.input_tokens:,} input / {wl.output_tokens:,} output tokens), {reps} reps")

    run_nbinfer(llm, make_workload(workload, min(4, num_prompts), vocab, seed + 1, scale=min(scale, 0.1)), str(dev))
    ours = []
    for i in range(reps):
        ours.append(run_nbinfer(llm, wl, str(dev)))
        log(f"  nbinfer rep {i + 1}: {ours[-1].output_tps:,.1f} output tok/s")

    result: dict = {"label": label, "device": str(dev), "workload": workload, "num_prompts": num_prompts}
    if cuda and roofline:
        from .roofline import copy_bandwidth, probe_decode
        bw = copy_bandwidth()
        ctx = min(max(map(len, wl.prompts)), llm.max_model_len - 128)
        probes = [probe_decode(llm, b, ctx, bw) for b in (1, min(64, num_prompts))]
        result["roofline_table"] = roofline_table(probes, bw)
        result["roofline"] = [asdict(p) | {"fraction": p.fraction} for p in probes]
        result["bandwidth_Bps"] = bw
    llm.shutdown()
    del llm

    summaries = [Summary.of(ours)]
    if hf:
        hf_model = load_hf(model_dir, torch_dtype, str(dev), dummy)
        small = make_workload(workload, min(2, num_prompts), vocab, seed + 1, scale=min(scale, 0.05))
        run_hf_best_effort(hf_model, small, str(dev), None)          # warm-up
        theirs, size = [], hf_batch_size
        for i in range(reps):
            r, size = run_hf_best_effort(hf_model, wl, str(dev), size)
            theirs.append(r)
            log(f"  hf-generate rep {i + 1} (batch {size}): {r.output_tps:,.1f} useful output tok/s")
        summaries.append(Summary.of(theirs))
        result["hf_batch_size"] = size
        result["ratio"] = summaries[0].output_tps / summaries[1].output_tps
        del hf_model
        if cuda:
            torch.cuda.empty_cache()
    result["summaries"] = summaries
    result["rows"] = [asdict(s) for s in summaries]
    result["table"] = table(summaries)
    if "ratio" in result:
        result["table"] += f"\n\nnbinfer / HF generate (useful output tokens/s): {result['ratio']:.2f}x"
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="nbinfer bench")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
