"""Kernel tests run everywhere: compiled on a CUDA device when there is one, otherwise on CPU through
Triton's interpreter. TRITON_INTERPRET must be set before any @triton.jit function is defined (triton
reads it at decoration time), hence at import of this conftest, before any test module imports
nbinfer.kernels.* -- and only when there is no GPU, so a GPU machine runs the real kernels."""
import os

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()
if not HAS_CUDA:
    os.environ["TRITON_INTERPRET"] = "1"

pytest.importorskip("triton")

DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture
def device():
    return DEVICE


@pytest.fixture
def rng():
    """A fresh generator per test: every run draws new random inputs; the seed is printed (pytest shows
    it on failure) so a failing draw can be replayed."""
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"rng seed {seed}")
    return torch.Generator().manual_seed(seed)
