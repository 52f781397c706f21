"""The `%nbinfer SUBCOMMAND` registry: each subcommand is a name, a help line, its flags and a run().

Adding one (e.g. `%nbinfer bench` from the bench module) is a decorator, nothing else:

    from nbinfer.jupyter.commands import subcommand

    def add_arguments(p):                  # p is an argparse parser whose errors raise UsageError
        p.add_argument("--num-prompts", type=int, default=8)

    @subcommand("bench", "run a short benchmark on the loaded model", add_arguments)
    def bench(args, shell):
        ...

Modules listed in PLUGINS are imported (if present) when the extension loads.
"""
from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass
from typing import Callable

from IPython.core.error import UsageError

# optional modules owned by other parts of nbinfer that register subcommands when imported
PLUGINS = ("nbinfer.bench.magic",)


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, object], object]


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, help: str, add_arguments: Callable | None = None):
    """Decorator registering run(args, shell) as `%nbinfer NAME`."""

    def register(run):
        SUBCOMMANDS[name] = Subcommand(name, help, add_arguments or (lambda p: None), run)
        refresh_help()
        return run

    return register


class _Parser(argparse.ArgumentParser):
    """Strict: no abbreviated flags, no -h (help is `%nbinfer?`), and every complaint is one
    UsageError line naming the subcommand -- never a SystemExit inside the kernel."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status=0, message=None):
        raise UsageError(f"{self.prog}: {message or 'invalid arguments'}".strip())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="%nbinfer", description="Load, inspect and unload the notebook's LLM engine.",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)
    for cmd in SUBCOMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help, prog=f"%nbinfer {cmd.name}")
        cmd.add_arguments(p)
    return parser


def help_text() -> str:
    """Full help: the overview, then every subcommand's usage (what `%nbinfer?` shows)."""
    parser = build_parser()
    parts = [parser.format_help().rstrip()]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        parts.append(f"--- %nbinfer {name} ---\n" + p.format_help().rstrip())
    return "\n\n".join(parts) + "\n"


def refresh_help() -> None:
    """Make `%nbinfer?` list every registered subcommand (IPython shows the magic's docstring)."""
    import sys
    magics = sys.modules.get("nbinfer.jupyter.magics")
    if magics is not None and hasattr(magics, "NbinferMagics"):
        magics.NbinferMagics.nbinfer.__doc__ = help_text()


def split_line(line: str) -> list[str]:
    """Shell-style words: `--system "Be brief."` is one value, without its quotes."""
    try:
        return shlex.split(line)
    except ValueError as e:                 # an unbalanced quote
        raise UsageError(f"{e} in {line.strip()!r}") from None


def dispatch(line: str, shell):
    parser = build_parser()
    try:
        argv = split_line(line)
    except UsageError as e:
        raise UsageError(f"%nbinfer: {e}") from None
    args = parser.parse_args(argv)
    if not args.command:
        raise UsageError(f"%nbinfer: give a subcommand, one of: {', '.join(SUBCOMMANDS)} (see %nbinfer?)")
    return SUBCOMMANDS[args.command].run(args, shell)
