"""`nbinfer serve [MODEL] [--host 127.0.0.1] [--port 8000] [--api-key KEY] [LLM options]`.

Every LLM option is a flag, generated from EngineConfig's fields by the same code as `%nbinfer load`'s
(`--num-kv-blocks 512`, `--max-model-len 2048`, `--no-enable-prefix-caching`, `--dtype {auto,...}`),
so a new engine option is a new flag with nothing written here.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from ..flags.engine_flags import add_engine_flags, engine_options
from .app import DEFAULT_MAX_BODY_BYTES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help="folder, .gguf file, named model, 'bundled' or hub id (default: smollm2-135m-instruct, "
                        "or $NBINFER_DEFAULT_MODEL)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=os.environ.get("NBINFER_API_KEY"),
                   help="require 'Authorization: Bearer KEY' on every route but /health (default: $NBINFER_API_KEY)")
    p.add_argument("--served-model-name", default=None, help="the model id clients send (default: MODEL)")
    p.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES,
                   help=f"largest request body accepted (default: {DEFAULT_MAX_BODY_BYTES})")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    add_engine_flags(p.add_argument_group("LLM options (as LLM(...) takes them)"))


def run(args: argparse.Namespace) -> int:
    from ..llm import LLM
    from ..models.default_model import interactive_default_model
    from .serve import serve_in_thread

    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if args.max_body_bytes < 1:
        raise ValueError(f"--max-body-bytes must be positive, got {args.max_body_bytes}")
    options = engine_options(args)
    try:
        llm = LLM(model=args.model or interactive_default_model(), **options)   # None: the bundled model
    except TypeError as e:
        raise ValueError(str(e)) from None
    stop = threading.Event()
    try:
        server = serve_in_thread(llm, args.host, args.port, args.api_key, args.served_model_name,
                                 args.max_body_bytes, args.log_level)
    except BaseException:
        llm.shutdown()
        raise
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    s = llm.stats()
    print(f"nbinfer serve: {s.model} on {s.device} ({s.dtype}), max_model_len {s.max_model_len}, "
          f"{s.blocks_total} KV blocks x {s.block_size} tokens", flush=True)
    print(f"nbinfer serve: listening on {server.url} (OpenAI API under /v1, SGLang API at /generate)"
          f"{' with an API key' if args.api_key else ''}; Ctrl-C stops", flush=True)
    try:
        while not stop.wait(0.5) and server.running:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
        llm.shutdown()
        print("nbinfer serve: stopped", file=sys.stderr)
    return 0
