"""The built-in `%nbinfer` subcommands: load, status, dashboard, unload (serve / connect / disconnect:
remote_commands.py)."""
from __future__ import annotations

import argparse
import time

from IPython.core.error import UsageError

from ..flags.engine_flags import add_engine_flags, check_config, engine_options
from . import serving, session
from .commands import subcommand


# -- load -------------------------------------------------------------------------------------------

def _load_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help="folder, .gguf file, named model or hub id (default: smollm2-135m-instruct)")
    add_engine_flags(p)


@subcommand("load", "load a model (unloading the current one first)", _load_arguments)
def load(args, shell):
    options = engine_options(args)
    try:
        check_config(args.model, options)       # a bad option must not cost the loaded model
    except ValueError as e:
        raise UsageError(f"%nbinfer load: {e}") from None
    served = serving.suspend()                  # the server follows the engine: closed while it loads
    previous = session.unload_llm()
    if previous:
        print(f"nbinfer: unloaded {previous}")
    started = time.perf_counter()
    try:
        llm = session.load_llm(args.model, **options)
    except Exception as e:                      # any failure: one line, and what it cost
        lost = f" (the previous model, {previous}, was unloaded)" if previous else ""
        if served is not None:
            lost += f"; serving at port {served.port} stopped"
        raise UsageError(f"%nbinfer load: {one_line(e)}{lost}") from e
    s = llm.stats()
    print(f"nbinfer: loaded {s.model} on {s.device} ({s.dtype}) in {time.perf_counter() - started:.1f} s · "
          f"weights {_mib(s.weights_bytes)} · KV cache {s.blocks_total} blocks × {s.block_size} tokens "
          f"({_mib(s.kv_cache_bytes)}) · max_model_len {s.max_model_len}")
    if served is not None:
        _serve_again(llm, served)
    remote = session.current_remote()
    if remote is not None:
        print(f"nbinfer: cells still run on the remote server at {remote.url} "
              "(`%nbinfer disconnect` to use this model)")


def _serve_again(llm, spec) -> None:
    try:
        server = serving.start(llm, spec)
    except ValueError as e:                     # the port was taken while the model loaded
        raise UsageError(f"%nbinfer load: the model is loaded, but serving it again failed: {e}") from None
    print(f"nbinfer: serving {llm.stats().model} at {server.url} again")


def one_line(e: BaseException) -> str:
    """An exception as one line: our own errors as written, anything else (torch, the hub, the OS)
    with its type, which is often what says what went wrong."""
    text = " ".join(str(e).split()) or "no details"
    return text if isinstance(e, (ValueError, TypeError)) else f"{type(e).__name__}: {text}"


# -- status / unload --------------------------------------------------------------------------------

@subcommand("status", "show what cells run on: the loaded model (KV cache, requests) or the connected server")
def status(args, shell):
    from IPython.display import display

    from .status import StatusView
    remote = session.current_remote()
    llm = session.current_llm()
    if remote is not None:
        print(f"nbinfer: cells run on the remote server: {remote.capabilities.describe()}")
        display(StatusView(_current_stats()))
        print("nbinfer: local engine (not used by cells while connected): "
              + (session.describe(llm) if llm is not None else "none loaded"))
    elif llm is None:
        print("nbinfer: no model is loaded (`%nbinfer load [MODEL]`; %%generate loads the default model)")
    else:
        display(StatusView(llm.stats()))
    server = serving.current()
    if server is not None:
        key = " (API key required)" if serving.spec() and serving.spec().api_key else ""
        print(f"nbinfer: serving the local engine at {server.url}{key}")


def _current_stats():
    """One frame's source for what cells run on: a connected remote's /metrics (a RemoteFrame), the
    local engine's stats, or None."""
    remote = session.current_remote()
    if remote is not None:
        from .remote_frame import RemoteMetricsReader
        return RemoteMetricsReader(remote).frame()
    llm = session.current_llm()
    return llm.stats() if llm is not None else None


@subcommand("unload", "shut the engine down and free its weights and KV cache (and stop serving it)")
def unload(args, shell):
    stopped = serving.stop()                    # before the engine goes: no answers from a freed engine
    if stopped is not None:
        print(f"nbinfer: stopped serving at {stopped.url}")
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
            print(f"nbinfer: the live dashboard needs ipywidgets and anywidget ({e}), which "
                  "`pip install nbinfer` installs. A snapshot instead:")
            static = True
    if static:
        display(StatusView(_current_stats(), with_block_map=True))
        return
    show_dashboard(interval=args.interval)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n < 2**30 else f"{n / 2**30:,.2f} GiB"
