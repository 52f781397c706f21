"""Kernel tests run everywhere: compiled on a CUDA device when there is one, otherwise on CPU through
Triton's interpreter. Triton reads TRITON_INTERPRET when a @triton.jit function is defined (its own
helpers included) and again while launching, so without a GPU this conftest sets it before triton is
first imported and leaves it set for the session. That is harmless to other test folders: without a
GPU nothing else can launch a Triton kernel anyway."""
import os
import sys

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

if not HAS_CUDA and not os.environ.get("TRITON_INTERPRET"):
    if "triton" in sys.modules:
        raise RuntimeError("tests/kernels: triton was imported before this conftest could set TRITON_INTERPRET=1; "
                           "run these tests in their own process or import triton later")
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
