"""The real model of the real-model tests: SmolLM2-135M-Instruct, nbinfer's named default, fetched once
per machine into nbinfer's cache (so once per CI run at most) and reused by every test that needs it."""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

NAME = "smollm2-135m-instruct"
# .ci/run sets this: there a model that cannot be fetched fails the real-model tier instead of skipping it
REQUIRED_ENV = "NBINFER_REQUIRE_REAL_MODEL"


@functools.lru_cache(maxsize=None)
def _fetch() -> tuple[Path | None, str]:
    from nbinfer.models.named import FetchError, named_model_file
    try:
        return named_model_file(NAME), ""
    except FetchError as e:
        return None, str(e)


def real_gguf() -> Path:
    """The model's GGUF file; skips the test (fails it under .ci/run) when it cannot be fetched."""
    path, error = _fetch()
    if path is None:
        message = f"the real model {NAME} could not be fetched: {error}"
        if os.environ.get(REQUIRED_ENV):
            pytest.fail(message)
        pytest.skip(message)
    return path
