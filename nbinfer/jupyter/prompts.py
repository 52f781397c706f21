"""Turning a %%generate cell body into prompts: {var} interpolation and `---` separators."""
from __future__ import annotations

import re

# {name} or {name.attr.attr}; anything else between braces (JSON, set literals, spaces) is left as is
_FIELD = re.compile(r"\{([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\}")
_MISSING = object()


def interpolate(text: str, namespace: dict) -> str:
    """Replace {name} and {name.attr} with str() of the notebook variable; unknown names stay as
    written. There is no brace escaping on purpose: JSON such as {"a": {"b": 1}} passes unchanged."""

    def replace(m: re.Match) -> str:
        token = m.group(0)
        head, *attrs = m.group(1).split(".")
        value = namespace.get(head, _MISSING)
        for attr in attrs:
            if value is _MISSING:
                break
            value = getattr(value, attr, _MISSING)
        return token if value is _MISSING else str(value)

    return _FIELD.sub(replace, text)


def split_prompts(body: str) -> list[str]:
    """Lines that are exactly `---` (trailing spaces allowed) separate prompts. Each prompt loses
    its surrounding whitespace: a trailing newline or space would change what the model sees next.
    Raises ValueError naming the empty prompt."""
    chunks: list[list[str]] = [[]]
    for line in body.splitlines():
        if line.rstrip() == "---":
            chunks.append([])
        else:
            chunks[-1].append(line)
    prompts = ["\n".join(lines).strip() for lines in chunks]
    for i, p in enumerate(prompts):
        if not p:
            if len(prompts) == 1:
                raise ValueError("the cell body is empty: write the prompt below the %%generate line")
            raise ValueError(f"prompt {i + 1} of {len(prompts)} is empty (check the `---` separators)")
    return prompts
