"""The `nbinfer` command. Each subcommand lives in its own module exposing add_arguments(p) and run(args)."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "demo": ("nbinfer.demo", "generate a few completions with the default model (smollm2-135m-instruct)"),
    "bench": ("nbinfer.bench.cli", "throughput/latency benchmark beside HF generate, vLLM or llama.cpp"),
    "install-kernel": ("nbinfer.jupyter.kernelspec", "install a Jupyter kernel that preloads %load_ext nbinfer"),
    "serve": ("nbinfer.server.cli", "serve a model over HTTP: OpenAI-compatible (/v1) and SGLang (/generate) APIs"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nbinfer", description="Jupyter-native LLM inference engine")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    modules = {}
    for name, (module, help_text) in COMMANDS.items():
        # argparse %-formats a subcommand's help line (the overview), not its description
        p = sub.add_parser(name, help=help_text.replace("%", "%%"), description=help_text)
        try:
            modules[name] = importlib.import_module(module)
        except ImportError:
            continue
        modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    if args.command not in modules:
        parser.error(f"'{args.command}' is not available in this installation")
    try:
        return modules[args.command].run(args) or 0
    except ValueError as e:     # user errors: one line, no traceback
        print(f"nbinfer {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
