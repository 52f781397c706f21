"""Checks for user-given option values (SamplingParams fields, EngineConfig options): each failure is
a ValueError naming the field and the value received, so a bad value never reaches the engine
thread. Bools are not numbers here, non-finite floats are refused, numpy scalars are accepted."""
from __future__ import annotations

import math
import numbers


class Checker:
    """check = Checker("SamplingParams"); check.integer("n", value, low=1) -> the value as an int."""

    def __init__(self, owner: str = ""):
        self.prefix = f"{owner}." if owner else ""

    def fail(self, name: str, value, why: str):
        raise ValueError(f"{self.prefix}{name} {why}, got {value!r}")

    def integer(self, name: str, value, low: int | None = None, high: int | None = None,
                optional: bool = False) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            self.fail(name, value, "must be an integer" + (" or None" if optional else ""))
        value = int(value)
        if low is not None and value < low:
            self.fail(name, value, "must be a positive integer" if (low, high) == (1, None) else f"must be >= {low}")
        if high is not None and value > high:
            self.fail(name, value, f"must be <= {high}")
        return value

    def number(self, name: str, value, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> float:
        """A finite real number in [low, high] ((low, high] with low_open)."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.fail(name, value, "must be a number")
        value = float(value)
        if low is not None and high is not None:      # one message naming the whole range (nan is outside it)
            inside = (low < value if low_open else low <= value) and value <= high
            if not inside:
                self.fail(name, value, f"must be in {'(' if low_open else '['}{low:g}, {high:g}]")
        if not math.isfinite(value):
            self.fail(name, value, "must be a finite number")
        if low is not None and (value <= low if low_open else value < low):
            self.fail(name, value, f"must be {'>' if low_open else '>='} {low}")
        if high is not None and value > high:
            self.fail(name, value, f"must be <= {high}")
        return value

    def boolean(self, name: str, value) -> bool:
        if not isinstance(value, bool):
            self.fail(name, value, "must be True or False")
        return value

    def string(self, name: str, value, optional: bool = False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            self.fail(name, value, "must be a string" + (" or None" if optional else ""))
        return value
