"""`nbinfer bench`: one workload through nbinfer and its peers (HF generate, vLLM, llama.cpp), medians
of repetitions, and how many times nbinfer is ahead of each."""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ..models.quantize import QUANTIZATIONS
from .peers import PEERS
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
    p.add_argument("--quantization", default=None, choices=QUANTIZATIONS,
                   help="nbinfer's weight-only quantization (int8: compare with llama.cpp on a Q8_0 --gguf)")
    p.add_argument("--peer", action="append", choices=sorted(PEERS),
                   help="a system to run beside nbinfer, in its own process (repeatable): hf (transformers "
                        "generate), vllm, llama-cpp (needs --gguf). Default: hf")
    p.add_argument("--peer-python", action="append", metavar="NAME=PATH",
                   help="run peer NAME with this Python, e.g. vllm=/venvs/vllm/bin/python (default: this "
                        "Python, where the peer's package imports)")
    p.add_argument("--peer-dtype", action="append", metavar="NAME=DTYPE",
                   help="run peer NAME in another dtype than nbinfer's, e.g. vllm=bfloat16 (default: --dtype)")
    p.add_argument("--gguf", default=None, help="the GGUF file of the same model, for --peer llama-cpp")
    p.add_argument("--hf", dest="hf", action="store_true", default=True, help="run HF generate when no --peer is given (default)")
    p.add_argument("--no-hf", dest="hf", action="store_false", help="no peer unless --peer names one")
    p.add_argument("--hf-batch-size", type=int, default=None, help="HF batch size (default: all in one padded batch)")
    p.add_argument("--no-roofline", dest="roofline", action="store_false", default=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")


def run(args) -> int:
    result = run_bench(**{k: v for k, v in vars(args).items() if k != "command"}, log=print)
    print()
    print(result["table"])
    if result.get("ratio_table"):
        print()
        print(result["ratio_table"])
    if result.get("roofline_table"):
        print()
        print(result["roofline_table"])
    if args.json:
        args.json.write_text(json.dumps({k: v for k, v in result.items() if k != "summaries"}, indent=2, default=str))
    return 0


class _Nbinfer:
    """nbinfer in this process, behind the same load / run / close as a peer."""

    name = "nbinfer"

    def __init__(self, model_dir, dtype: str, device: str, dummy: bool, max_num_seqs: int, seed: int,
                 quantization: str | None = None):
        self.args = dict(model=str(model_dir), dtype=dtype, device=device, load_format="dummy" if dummy else "auto",
                         max_num_seqs=max_num_seqs, seed=seed, quantization=quantization)
        self.llm, self.device = None, device
        self.info = {"dtype": f"{dtype} + int8 weights" if quantization == "int8" else dtype}

    def load(self) -> None:
        from nbinfer import LLM
        start = time.monotonic()
        self.llm = LLM(**self.args)
        self.info["load_s"] = time.monotonic() - start

    def run(self, workload):
        from .systems import run_nbinfer
        return run_nbinfer(self.llm, workload, self.device)

    def close(self) -> None:
        if self.llm is not None:
            self.llm.shutdown()
            self.llm = None


class _PeerSystem:
    def __init__(self, name: str, python: str, job: dict):
        self.name, self.python, self.job, self.peer, self.info = name, python, job, None, {}

    def load(self) -> None:
        from .peers import Peer
        self.peer = Peer(self.name, self.python)
        try:
            self.info = self.peer.load(**self.job)
        except Exception:
            self.peer.close()
            raise

    def run(self, workload):
        return self.peer.run(workload)

    def close(self) -> None:
        if self.peer is not None:
            self.peer.close()
            self.peer = None


def _chat_prompt(llm) -> list[int] | None:
    """CHAT_MESSAGE in the model's chat template, or None without a template."""
    from .workloads import CHAT_MESSAGE
    tok = llm.get_tokenizer()
    if not getattr(tok, "chat_template", None):
        return None
    return list(tok.apply_chat_template([{"role": "user", "content": CHAT_MESSAGE}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False))


def run_bench(model=None, shape=None, workload="mixed", num_prompts=None, scale=1.0, reps=3, device="auto",
              dtype="auto", max_num_seqs=256, quantization=None, peer=None, peer_python=None, peer_dtype=None, gguf=None, hf=True,
              hf_batch_size=None, roofline=True, seed=0, json=None, log=print) -> dict:
    """Run the benchmark; returns {"summaries", "table", "ratio_table", "ratios", ...}. Also used by
    %nbinfer bench. On a CPU the systems are all loaded and their repetitions interleaved (drift on a
    shared machine hits each alike); on CUDA they run one after another (one engine's memory pool at a time)."""
    import torch

    from nbinfer.engine.resolved import resolve_device, resolve_dtype

    from .metrics import Summary, agreement, percentile
    from .peers import parse_peer_options, peer_python as python_for
    from .report import ratio_table, ratios, roofline_table, table
    from .shapes import make_model_dir
    from .workloads import make_workload

    if reps < 1:
        raise ValueError("--reps must be >= 1")
    peer_names = list(dict.fromkeys(peer or (["hf"] if hf else [])))
    overrides = parse_peer_options(peer_python, "--peer-python")
    dtypes = {n: str(resolve_dtype(d, resolve_device(device))).replace("torch.", "")
              for n, d in parse_peer_options(peer_dtype, "--peer-dtype").items()}
    pythons = {name: python_for(name, overrides) for name in peer_names}     # fail before loading anything
    if "llama-cpp" in peer_names and not (gguf and Path(gguf).is_file()):
        raise ValueError(f"--peer llama-cpp needs --gguf PATH to a GGUF file of the same model (got {gguf!r})")
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    dtype_name = str(resolve_dtype(dtype, dev)).replace("torch.", "")
    dummy = model is None
    if dummy:
        shape = shape or ("Llama-2-7B" if cuda else "tiny")
        model_dir = make_model_dir(shape, Path(tempfile.gettempdir()) / "nbinfer-bench-shapes")
        label = f"{shape} (random weights)"
    else:
        model_dir, label = model, str(model)
    num_prompts = num_prompts or (256 if cuda else 32)

    ours = _Nbinfer(model_dir, dtype_name, str(dev), dummy, max_num_seqs, seed, quantization)
    job = dict(model=str(model_dir), dtype=dtype_name, device=str(dev), dummy=dummy,
               threads=torch.get_num_threads(), gguf=str(gguf) if gguf else None, batch_size=hf_batch_size,
               max_num_seqs=max_num_seqs)
    systems = [ours] + [_PeerSystem(n, pythons[n], {**job, "dtype": dtypes.get(n, dtype_name)}) for n in peer_names]
    runs: dict[str, list] = {s.name: [] for s in systems}
    result: dict = {"label": label, "device": str(dev), "workload": workload}

    def loaded(s):
        log(f"  {s.name}: loaded in {s.info['load_s']:.1f} s" + (f" ({s.info['version']})" if "version" in s.info else ""))

    def rep(s, i):
        r = s.run(wl)
        runs[s.name].append(r)
        log(f"  {s.name} rep {i + 1}: {r.output_tps:,.1f} output tok/s, TTFT p50 {percentile(r.ttft_s, 0.5) * 1e3:,.0f} ms")

    try:
        if not cuda:        # peers first: one that cannot load fails before nbinfer's load
            for s in systems[1:]:
                s.load()
        ours.load()
        vocab = ours.llm.engine.model_config.vocab_size
        chat = _chat_prompt(ours.llm) if workload == "single" and not dummy else None
        wl = make_workload(workload, num_prompts, vocab, seed=seed, scale=scale, chat_prompt=chat)
        warm = make_workload(workload, min(4, len(wl.prompts)), vocab, seed + 1, scale=min(scale, 0.1))
        log(f"nbinfer bench: {label}, {dev}, {dtype_name}, workload {workload} ({len(wl.prompts)} requests, "
            f"{wl.input_tokens:,} input / {wl.output_tokens:,} output tokens), {reps} reps, "
            f"peers: {', '.join(peer_names) or 'none'}")
        result["num_prompts"] = len(wl.prompts)
        if cuda:       # one system on the GPU at a time
            for s in systems:
                if s is not ours:
                    s.load()
                loaded(s)
                s.run(warm)                             # warm-up, excluded
                for i in range(reps):
                    rep(s, i)
                if s is ours and roofline:
                    result.update(_roofline(ours.llm, wl, num_prompts, roofline_table))
                s.close()
        else:
            for s in systems:
                loaded(s)
                s.run(warm)
            for i in range(reps):
                for s in systems:
                    rep(s, i)
    finally:
        for s in systems:
            s.close()

    summaries = [Summary.of(runs["nbinfer"], dtype=ours.info["dtype"], load_s=ours.info["load_s"])]
    for s in systems[1:]:
        match = None if dummy else agreement(runs["nbinfer"][0].token_ids, runs[s.name][0].token_ids)
        summaries.append(Summary.of(runs[s.name], dtype=s.info.get("dtype", ""), load_s=s.info["load_s"], match=match))
    result["summaries"] = summaries
    result["rows"] = [asdict(s) | {"decode_tps": s.decode_tps} for s in summaries]
    result["table"] = table(summaries)
    if len(summaries) > 1:
        result["ratios"] = {s.system: ratios(summaries[0], s) for s in summaries[1:]}
        result["ratio"] = result["ratios"][summaries[1].system]["out_tps"]
        result["ratio_table"] = ratio_table(summaries[0], summaries[1:])
    if "hf" in peer_names:
        result["hf_batch_size"] = runs["hf"][-1].batch_size
    return result


def _roofline(llm, wl, num_prompts, roofline_table) -> dict:
    from .roofline import copy_bandwidth, probe_decode
    bw = copy_bandwidth()
    ctx = min(max(map(len, wl.prompts)), llm.max_model_len - 128)
    probes = [probe_decode(llm, b, ctx, bw) for b in (1, min(64, num_prompts))]
    return {"roofline_table": roofline_table(probes, bw), "bandwidth_Bps": bw,
            "roofline": [asdict(p) | {"fraction": p.fraction} for p in probes]}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="nbinfer bench")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
