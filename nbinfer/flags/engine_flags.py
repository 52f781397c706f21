"""The LLM options as command-line flags, generated from the engine's config dataclass: an engine option
is written once (`%nbinfer load` and `nbinfer serve` take the same flags).

Every field of EngineConfig but `model` (the positional MODEL) becomes a flag: its name
(block_size -> --block-size), its type (int, float, str; a bool is `--x` when it defaults to False
and `--no-x` when it defaults to True), its default, its help (field metadata "help", else the
comment written beside the field, as simple_parsing reads them) and its choices (the config's ATTENTION_BACKENDS, DTYPES, ...). Ranges
are not repeated here: EngineConfig checks the values itself (check_config), so the magic and
LLM(...) accept exactly the same options.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import textwrap
import tokenize
import types
import typing

from ..engine.config import ATTENTION_BACKENDS, DEVICES, DTYPES, LOAD_FORMATS, SCHEDULE_POLICIES, EngineConfig
from ..engine.resolved import check_for_this_machine
from .argtypes import choice, integer, number

CHOICES = {"attention_backend": ATTENTION_BACKENDS, "dtype": DTYPES, "device": DEVICES,
           "schedule_policy": SCHEDULE_POLICIES, "load_format": LOAD_FORMATS}
INDEXED = {"device"}                     # "cuda:1" names one of several
POSITIONAL = "model"
# flags users already type, kept working: alias -> (field, value it sets)
ALIASES = {"--no-prefix-caching": ("enable_prefix_caching", False)}
_METAVARS = {int: "N", float: "F"}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def negated(name: str) -> str:
    """The flag that turns a default-True option off (vLLM's spelling: --no-enable-prefix-caching)."""
    return "--no-" + name.replace("_", "-")


def flag_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(EngineConfig) if f.name != POSITIONAL]


def add_engine_flags(p: argparse.ArgumentParser) -> None:
    """One flag per EngineConfig field (plus ALIASES)."""
    comments = field_comments(EngineConfig)
    hints = typing.get_type_hints(EngineConfig)
    for f in flag_fields():
        kind = _base_type(hints[f.name])
        if kind not in (bool, int, float, str):
            continue                     # not one word on a command line (a dict, a torch.dtype): API only
        # argparse %-formats help strings: a literal % in a comment ("20% of RAM") must be doubled
        text = (f.metadata.get("help") or comments.get(f.name, "")).replace("%", "%%")
        if kind is bool:
            p.add_argument(negated(f.name) if f.default else flag(f.name), dest=f.name,
                           action="store_false" if f.default else "store_true", help=text or None)
            continue
        default = f"(default: {f.default})" if f.default is not None else ""
        text = f"{text} {default}".strip()
        if f.name in CHOICES:
            options = CHOICES[f.name]
            metavar = "{" + ",".join(options) + "}" + ("[:N]" if f.name in INDEXED else "")
            p.add_argument(flag(f.name), type=choice(options, indexed=f.name in INDEXED), default=f.default,
                           metavar=metavar, help=text)
        else:
            convert = {int: integer, float: number}.get(kind, kind)
            p.add_argument(flag(f.name), type=convert, default=f.default,
                           metavar=_METAVARS.get(kind, f.name.upper()), help=text)
    for alias, (name, value) in ALIASES.items():
        p.add_argument(alias, dest=name, action="store_const", const=value,
                       help=f"the same as {negated(name) if value is False else flag(name)}")


def engine_options(args: argparse.Namespace) -> dict:
    """The EngineConfig keyword arguments (all but model) that the parsed flags name."""
    return {f.name: getattr(args, f.name) for f in flag_fields() if hasattr(args, f.name)}


def check_config(model: str | None, options: dict) -> None:
    """Validate the options as LLM(...) will, and the device and attention backend on this machine,
    before anything is unloaded. Raises ValueError naming the
    flag ("--block-size must be a positive integer, got 0") where the config's message names the field."""
    try:
        check_for_this_machine(EngineConfig.from_kwargs(model=model, **options))
    except (ValueError, TypeError) as e:
        message = str(e)
        for f in flag_fields():
            if message.startswith((f.name + " ", f.name + "=")):
                message = flag(f.name) + message[len(f.name):]
                break
        raise ValueError(message) from None


def _base_type(hint) -> type:
    """int for `int | None`, and so on."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    return hint


def field_comments(cls: type) -> dict[str, str]:
    """The comment written after each field of a dataclass (and of the dataclasses it extends), with
    its continuation lines (comment-only lines indented past the field):
    `block_size: int = 16   # tokens per KV block` -> "tokens per KV block". Fields whose source is
    not available (a zipped or frozen install) have none: their flags lose only their help."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if dataclasses.is_dataclass(klass):
            found.update(_own_field_comments(klass))
    return found


def _own_field_comments(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments = {tok.start[0]: (tok.start[1], tok.string.lstrip("#").strip())
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    body = ast.parse(source).body[0].body
    code_lines = {n for node in body for n in range(node.lineno, node.end_lineno + 1)}
    found = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        parts = [comments[n][1] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        line = node.end_lineno + 1
        while line in comments and line not in code_lines and comments[line][0] > node.col_offset:
            parts.append(comments[line][1])
            line += 1
        found[node.target.id] = " ".join(parts)
    return found
