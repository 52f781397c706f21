"""Building and loading the CPU kernels' library leaves the process's floating point as it was."""
import subprocess
import sys

import pytest

CHECK = """
import torch
from nbinfer.kernels.cpu_build import library
before = (torch.tensor([1e-39]) * 1).item()
assert before != 0, "subnormals flushed before loading"
if library() is None:
    print("no library")
else:
    print("after", (torch.tensor([1e-39]) * 1).item())
"""


def test_loading_the_kernels_keeps_subnormals():
    # a fresh process: flush-to-zero, once set by a library's constructor, stays for the thread
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=600, check=True).stdout
    if "no library" in out:
        pytest.skip("the CPU kernels cannot be built here")
    assert float(out.split()[-1]) != 0.0, out
