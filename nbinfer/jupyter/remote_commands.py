"""`%nbinfer serve` (the notebook's engine over HTTP) and `%nbinfer connect` / `disconnect` (the cells
on a remote server: vLLM, SGLang or another `nbinfer serve`)."""
from __future__ import annotations

import argparse
import ipaddress

from IPython.core.error import UsageError

from . import serving, session
from ..flags.argtypes import choice, int_min
from .commands import subcommand

APIS = ("auto", "openai", "sglang")


# -- serve ------------------------------------------------------------------------------------------

def _serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int_min(0, "--port"), default=8000, metavar="N",
                   help="port to listen on (default 8000; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", metavar="H",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require `Authorization: Bearer KEY` on every route but /health")
    p.add_argument("--stop", action="store_true", help="stop serving")


@subcommand("serve", "serve the notebook's engine over HTTP (OpenAI + SGLang APIs) while cells keep working",
            _serve_arguments)
def serve(args, shell):
    if args.stop:
        stopped = serving.stop()
        print(f"nbinfer: stopped serving at {stopped.url}" if stopped else "nbinfer: not serving")
        return
    if args.port > 65535:
        raise UsageError(f"%nbinfer serve: --port must be <= 65535, got {args.port}")
    llm = session.get_llm()
    previous = serving.current()
    if previous is not None:                    # serving again (another port, a key): say the old URL closed
        print(f"nbinfer: stopped serving at {previous.url}")
    try:
        server = serving.start(llm, serving.ServeSpec(args.host, args.port, args.api_key))
    except ImportError as e:
        raise UsageError(f"%nbinfer serve needs the server extra (pip install 'nbinfer[server]'): {e}") from None
    except ValueError as e:
        raise UsageError(f"%nbinfer serve: {e}") from None
    print(f"nbinfer: serving {session.describe(llm)} at {server.url} ({_serving_note(args)}) · "
          "`%nbinfer serve --stop` stops it")


def _serving_note(args) -> str:
    note = "OpenAI API under /v1, SGLang's /generate"
    if args.api_key:
        return note + "; every route but /health needs the API key"
    if not _loopback(args.host):
        return note + f"; no API key: anyone who can reach {args.host} can use this engine (--api-key)"
    return note


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


# -- connect / disconnect ---------------------------------------------------------------------------

def _connect_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", default=None, metavar="KEY", help="sent as `Authorization: Bearer KEY`")
    p.add_argument("--api", type=choice(APIS), default="auto", metavar="{" + ",".join(APIS) + "}",
                   help="the API to speak (default auto: SGLang's native API to SGLang, else OpenAI's)")


@subcommand("connect", "run %%generate, %%sgl and the dashboard on a remote server (vLLM, SGLang, nbinfer)",
            _connect_arguments)
def connect(args, shell):
    if not args.url.startswith(("http://", "https://")):
        raise UsageError(f"%nbinfer connect: URL must start with http:// or https://, got {args.url!r}")
    try:
        from ..server.client import RemoteLLM
    except ImportError as e:
        raise UsageError(f"%nbinfer connect needs httpx (pip install 'nbinfer[server]'): {e}") from None
    try:
        remote = RemoteLLM(args.url, api_key=args.api_key, api=args.api)
    except Exception as e:          # no server, wrong API, refused key: one line
        raise UsageError(f"%nbinfer connect: {' '.join(str(e).split())}") from None
    session.connect(remote)
    print(f"nbinfer: connected to {describe_remote(remote)}; %%generate, %%sgl and the dashboard now run "
          "there (`%nbinfer disconnect` returns to the local engine)")


def describe_remote(remote) -> str:
    caps = remote.capabilities
    version = f" {caps.version}" if caps.version else ""
    length = f" · max_model_len {caps.max_model_len}" if caps.max_model_len else ""
    return f"{caps.server}{version} at {caps.url} ({caps.api} API) · model {caps.model}{length}"


@subcommand("disconnect", "return %%generate, %%sgl and the dashboard to the local engine")
def disconnect(args, shell):
    remote = session.disconnect()
    if remote is None:
        print("nbinfer: not connected to a remote server")
        return
    llm = session.current_llm()
    local = session.describe(llm) if llm is not None else "none loaded yet; %%generate loads the default model"
    print(f"nbinfer: disconnected from {remote.url}; cells run on the local engine ({local})")
