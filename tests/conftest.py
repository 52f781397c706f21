import os
import sys
from pathlib import Path

# `python -m pytest` (the README's command) puts the checkout's root first on sys.path, where kernels/
# (shipped as nbinfer.kernels) shadows PyPI's `kernels`, which transformers (>= 5.25) requires and
# imports: `from kernels import ...` then fails inside transformers. nbinfer comes from its install, not
# from the root, so take the root off the path here, and keep child Pythons (`python -m nbinfer demo`,
# kernels started from this directory) from putting it back (PYTHONSAFEPATH, Python 3.11+).
_ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or os.getcwd()).resolve() != _ROOT]
os.environ["PYTHONSAFEPATH"] = "1"

# dtype="auto" picks bf16 on CPUs with native bf16; the suite's exactness checks (HF greedy parity,
# backend against backend) are fp32 checks, so pin fp32 for every machine, subprocesses included
os.environ.setdefault("NBINFER_CPU_BF16", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import FAMILIES, build_tiny_model  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
# Entry points that load "the default model" (%nbinfer load, %%generate with nothing loaded, nbinfer demo)
# load the bundled story model in tests, offline and fast, unless a test says otherwise; the real default
# (smollm2-135m-instruct) is tested in test_real_model.py / test_gguf.py. Kernels and subprocesses inherit it.
os.environ.setdefault("NBINFER_DEFAULT_MODEL", "bundled")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """model_dir(family) -> folder with a tiny random model of that family (built once a session)."""
    built = {}

    def get(family: str = "llama", **kw) -> Path:
        key = (family, tuple(sorted(kw.items())))
        if key not in built:
            name = family + "".join(f"-{k}{v}" for k, v in sorted(kw.items()))
            built[key] = build_tiny_model(tmp_path_factory.mktemp(name), family, **kw)
        return built[key]

    return get


@pytest.fixture(scope="session")
def llama_dir(model_dir):
    return model_dir("llama")


@pytest.fixture(scope="session")
def hf_ref(model_dir):
    """hf_ref(family) -> HFReference for that tiny model (fp32, CPU)."""
    from hf_reference import HFReference
    cache = {}

    def get(family: str = "llama") -> HFReference:
        if family not in cache:
            cache[family] = HFReference(model_dir(family))
        return cache[family]

    return get


@pytest.fixture(scope="session")
def shared_llm(llama_dir):
    """One engine shared by tests that do not care about its configuration."""
    from nbinfer import LLM
    llm = LLM(llama_dir, num_kv_blocks=512)
    yield llm
    llm.shutdown()


@pytest.fixture
def families():
    return FAMILIES
