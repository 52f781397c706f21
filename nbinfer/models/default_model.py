"""The model an interactive entry point loads when the user names none: `nbinfer demo`, `%nbinfer load`
without a model, and %%generate / %%sgl with nothing loaded.

It is $NBINFER_DEFAULT_MODEL if set (any model reference, or "bundled"), else smollm2-135m-instruct, a
real instruct model fetched once (98 MB) and cached. When a named model cannot be fetched (no network),
the entry point says so in one line and uses the bundled story model, so it still runs.
`LLM(model=None)` is not an interactive entry point: it always means the bundled model, offline.
"""
from __future__ import annotations

import os
import sys

from .named import BUNDLED, NAMED_MODELS, FetchError, named_model_file

DEFAULT_MODEL = "smollm2-135m-instruct"
ENV_VAR = "NBINFER_DEFAULT_MODEL"


def default_model_name() -> str:
    return os.environ.get(ENV_VAR, "").strip() or DEFAULT_MODEL


def interactive_default_model() -> str | None:
    """The model reference to load (None: the bundled model), fetching a named model first if needed."""
    name = default_model_name()
    if name == BUNDLED:
        return None
    if name in NAMED_MODELS:
        try:
            named_model_file(name)
        except FetchError as e:
            print(f"nbinfer: cannot fetch {name} ({e}); using the bundled story model instead",
                  file=sys.stderr, flush=True)
            return None
    return name
