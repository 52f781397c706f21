"""argparse `type=` checkers shared by %nbinfer, %%generate and %%sgl.

Each raises argparse.ArgumentTypeError, which the magics' parser turns into a one-line UsageError;
the messages are part of the interface (tests and users read them)."""
from __future__ import annotations

import argparse
import math
from typing import Callable


def identifier(text: str) -> str:
    if not text.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid Python variable name")
    return text


def _converter(convert: Callable, expected: str):
    """A type= function: convert(text), or an error saying what was expected."""
    def parse(text: str):
        try:
            return convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return parse


integer = _converter(int, "an integer")
number = _converter(float, "a number")


def _checked(convert: Callable, expected: str, bad: Callable, out_of_range: str):
    """A type= function: convert(text), rejecting what does not convert or what bad(value) flags."""
    to_value = _converter(convert, expected)

    def parse(text: str):
        value = to_value(text)
        if bad(value):
            raise argparse.ArgumentTypeError(f"{out_of_range}, got {text!r}")
        return value
    return parse


def int_min(lo: int, name: str | None = None):
    """An int >= lo; the range error names the flag when given ("--top-k must be >= -1")."""
    return _checked(int, "an integer", lambda v: v < lo, f"{name + ' ' if name else ''}must be >= {lo}")


def float_in(lo: float, hi: float | None = None, name: str | None = None):
    """A finite float in [lo, hi] (hi None: no upper bound)."""
    bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    in_range = _checked(float, "a number", lambda v: v < lo or (hi is not None and v > hi),
                        f"{name + ' ' if name else ''}must be {bound}")
    finite = _checked(in_range, "a number", lambda v: not math.isfinite(v),
                      f"{name + ' ' if name else ''}must be a finite number")
    return finite


def choice(options: tuple[str, ...], indexed: bool = False):
    """One of `options`; with indexed, also "option:N" for any option but "auto" (cuda:1)."""
    def parse(text: str) -> str:
        kind, sep, index = text.partition(":")
        if text in options or (indexed and sep and kind in options and kind != "auto" and index.isdigit()):
            return text
        also = " (or one of them with ':N')" if indexed else ""
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (choose from {', '.join(options)}{also})")
    return parse
