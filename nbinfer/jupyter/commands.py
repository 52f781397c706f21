"""The `%nbinfer SUBCOMMAND` registry: each subcommand is a name, a help line, its flags and a run().

Adding one (e.g. `%nbinfer bench` from the bench module) is a decorator, nothing else:

    from nbinfer.jupyter.commands import subcommand

    def add_arguments(p):                  # p: a MagicParser (strict argparse; errors are one UsageError line)
        p.add_argument("--num-prompts", type=int, default=8)

    @subcommand("bench", "run a short benchmark on the loaded model", add_arguments)
    def bench(args, shell):
        ...

Modules listed in PLUGINS are imported (if present) when the extension loads.
"""
from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass
from typing import Callable

from IPython.core.error import UsageError

from .magic_parser import MagicParser

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


def subcommand_parser(cmd: Subcommand) -> MagicParser:
    parser = MagicParser(prog=f"%nbinfer {cmd.name}", description=cmd.help)
    cmd.add_arguments(parser)
    return parser


def help_text() -> str:
    """Full help: the overview, then every subcommand's usage (what `%nbinfer?` shows)."""
    width = max(map(len, SUBCOMMANDS), default=0) + 2
    parts = ["usage: %nbinfer SUBCOMMAND [FLAGS]\n\nLoad, inspect and unload the notebook's LLM engine.\n\n"
             "subcommands:\n" + "\n".join(f"  {name:<{width}}{cmd.help}" for name, cmd in SUBCOMMANDS.items())]
    for name, cmd in SUBCOMMANDS.items():
        parts.append(f"--- %nbinfer {name} ---\n" + subcommand_parser(cmd).format_help().rstrip())
    return "\n\n".join(parts) + "\n"


def refresh_help() -> None:
    """Make `%nbinfer?` list every registered subcommand (IPython shows the magic's docstring)."""
    import sys
    magics = sys.modules.get("nbinfer.jupyter.magics")
    if magics is not None and hasattr(magics, "NbinferMagics"):
        magics.NbinferMagics.nbinfer.__doc__ = help_text()


def dispatch(line: str, shell):
    """`%nbinfer NAME FLAGS...`: NAME picks the subcommand, whose own strict parser reads the flags."""
    name, rest = (line.split(None, 1) + ["", ""])[:2]
    if not name:
        raise UsageError(f"%nbinfer: give a subcommand, one of: {', '.join(SUBCOMMANDS)} (see %nbinfer?)")
    cmd = SUBCOMMANDS.get(name)
    if cmd is None:
        close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1)
        hint = f"did you mean {close[0]}?" if close else "see %nbinfer?"
        raise UsageError(f"%nbinfer: invalid choice: {name!r} (choose from {', '.join(SUBCOMMANDS)}; {hint})")
    return cmd.run(subcommand_parser(cmd).parse_line(rest), shell)
