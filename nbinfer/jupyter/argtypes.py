"""argparse `type=` checkers shared by %nbinfer, %%generate and %%sgl.

Each raises argparse.ArgumentTypeError, which the magics' parsers turn into a one-line UsageError;
the messages are part of the interface (tests and users read them)."""
from __future__ import annotations

import argparse
from typing import Callable


def identifier(text: str) -> str:
    if not text.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid Python variable name")
    return text


def _checked(convert: Callable, expected: str, bad: Callable, out_of_range: str):
    """A type= function: convert(text), rejecting what does not convert or what bad(value) flags."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if bad(value):
            raise argparse.ArgumentTypeError(f"{out_of_range}, got {text!r}")
        return value
    return parse


def int_min(lo: int, name: str | None = None):
    """An int >= lo; the range error names the flag when given ("--top-k must be >= -1")."""
    return _checked(int, "an integer", lambda v: v < lo, f"{name + ' ' if name else ''}must be >= {lo}")


def float_in(lo: float, hi: float | None = None, name: str | None = None):
    """A float in [lo, hi] (hi None: no upper bound)."""
    bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
    return _checked(float, "a number", lambda v: v < lo or (hi is not None and v > hi),
                    f"{name + ' ' if name else ''}must be {bound}")


positive_int = _checked(int, "a positive integer", lambda v: v <= 0, "expected a positive integer")
fraction = _checked(float, "a number in (0, 1]", lambda v: not 0.0 < v <= 1.0, "expected a number in (0, 1]")
