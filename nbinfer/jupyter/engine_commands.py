"""The built-in `%nbinfer` subcommands: load, status, dashboard, unload."""
from __future__ import annotations

import argparse
import time

from IPython.core.error import UsageError

from . import session
from .argtypes import fraction, positive_int
from .commands import subcommand


# -- load -------------------------------------------------------------------------------------------

def _load_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help="folder, .gguf file, named model or hub id (default: smollm2-135m-instruct)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--block-size", type=positive_int, default=16, metavar="N", help="tokens per KV block")
    p.add_argument("--num-kv-blocks", type=positive_int, default=None, metavar="N",
                   help="KV cache size in blocks (default: sized from free memory)")
    p.add_argument("--max-model-len", type=positive_int, default=None, metavar="N")
    p.add_argument("--max-num-seqs", type=positive_int, default=256, metavar="N")
    p.add_argument("--max-num-batched-tokens", type=positive_int, default=None, metavar="N")
    p.add_argument("--gpu-memory-utilization", type=fraction, default=0.9, metavar="F")
    p.add_argument("--attention-backend", default="auto", choices=["auto", "torch", "triton"])
    p.add_argument("--no-prefix-caching", action="store_true", help="disable the radix prefix cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--trust-remote-code", action="store_true")


@subcommand("load", "load a model (unloading the current one first)", _load_arguments)
def load(args, shell):
    kwargs = dict(dtype=args.dtype, device=args.device, block_size=args.block_size,
                  num_kv_blocks=args.num_kv_blocks, max_model_len=args.max_model_len,
                  max_num_seqs=args.max_num_seqs, max_num_batched_tokens=args.max_num_batched_tokens,
                  gpu_memory_utilization=args.gpu_memory_utilization,
                  attention_backend=args.attention_backend, enable_prefix_caching=not args.no_prefix_caching,
                  seed=args.seed, revision=args.revision, trust_remote_code=args.trust_remote_code)
    previous = session.unload_llm()
    if previous:
        print(f"nbinfer: unloaded {previous}")
    started = time.perf_counter()
    try:
        llm = session.load_llm(args.model, **kwargs)
    except (ValueError, TypeError) as e:
        raise UsageError(f"%nbinfer load: {e}") from None
    s = llm.stats()
    print(f"nbinfer: loaded {s.model} on {s.device} ({s.dtype}) in {time.perf_counter() - started:.1f} s · "
          f"weights {_mib(s.weights_bytes)} · KV cache {s.blocks_total} blocks × {s.block_size} tokens "
          f"({_mib(s.kv_cache_bytes)}) · max_model_len {s.max_model_len}")


# -- status / unload --------------------------------------------------------------------------------

@subcommand("status", "show the loaded model, KV cache use and running requests")
def status(args, shell):
    from IPython.display import display

    from .status import StatusView
    llm = session.current_llm()
    if llm is None:
        print("nbinfer: no model is loaded (`%nbinfer load [MODEL]`; %%generate loads the default model)")
        return
    display(StatusView(llm.stats()))


@subcommand("unload", "shut the engine down and free its weights and KV cache")
def unload(args, shell):
    described = session.unload_llm()
    if described is None:
        print("nbinfer: no model is loaded")
    else:
        print(f"nbinfer: unloaded {described}; weights and KV cache freed")


# -- dashboard --------------------------------------------------------------------------------------

def _dashboard_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--interval", type=float, default=0.1, metavar="SECONDS",
                   help="seconds between frames (>= 0.1: at most 10 updates a second)")
    p.add_argument("--static", action="store_true", help="one static HTML snapshot instead of live widgets")


@subcommand("dashboard", "live view: KV block map, occupancy, batch, tokens/s, memory", _dashboard_arguments)
def dashboard(args, shell):
    from IPython.display import display

    if not args.interval >= 0.1:
        raise UsageError(f"%nbinfer dashboard: --interval must be at least 0.1 (10 frames a second), "
                         f"got {args.interval}")
    from .generation import in_kernel
    from .status import StatusView

    static = args.static or not in_kernel()     # terminal IPython cannot render widgets
    if not static:
        try:
            from .dashboard import show_dashboard
        except ImportError as e:                # ipywidgets / anywidget missing: say so, show a snapshot
            print(f"nbinfer: the live dashboard needs ipywidgets and anywidget ({e}); "
                  "pip install 'nbinfer[jupyter]'. A snapshot instead:")
            static = True
    if static:
        llm = session.current_llm()
        display(StatusView(llm.stats() if llm is not None else None, with_block_map=True))
        return
    show_dashboard(interval=args.interval)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"
