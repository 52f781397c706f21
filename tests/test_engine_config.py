"""EngineConfig is where every engine option is written once: LLM(...)'s signature and help, the
choice tuples, and the attention backends' names (from the registry)."""
import inspect
from dataclasses import fields

import pytest
import torch

from nbinfer import LLM
from nbinfer.engine import config
from nbinfer.engine.attention import backend_names, make_backend, resolve_backend_name
from nbinfer.engine.config import EngineConfig
from nbinfer.models.quantize import QUANTIZATIONS


def test_choice_tuples_come_from_one_place():
    assert config.ATTENTION_BACKENDS == ("auto", *backend_names())
    assert set(backend_names()) == {"cpu", "torch", "triton"}
    for f in fields(EngineConfig):
        if f.metadata["choices"]:
            assert f.default is None or f.default in f.metadata["choices"], f.name    # None: off
    assert dict((f.name, f.metadata["choices"]) for f in fields(EngineConfig) if f.metadata["choices"]) == {
        "dtype": config.DTYPES, "device": config.DEVICES, "attention_backend": config.ATTENTION_BACKENDS,
        "schedule_policy": config.SCHEDULE_POLICIES, "load_format": config.LOAD_FORMATS,
        "quantization": QUANTIZATIONS}
    assert all(f.metadata["help"] for f in fields(EngineConfig))


def test_every_registered_backend_builds_or_says_why():
    cpu = torch.device("cpu")
    assert resolve_backend_name("auto", cpu) == "cpu"
    assert resolve_backend_name("auto", torch.device("cuda")) == "triton"
    for name in backend_names():
        try:
            backend = make_backend(name, cpu, 16)
        except ValueError as e:
            assert name in str(e)                      # triton without a GPU: one clear sentence
        else:
            assert backend.name == name
    with pytest.raises(ValueError, match="attention_backend must be one of"):
        make_backend("flash", cpu, 16)
    with pytest.raises(ValueError, match="attention_backend must be 'auto', 'cpu', 'torch' or 'triton'"):
        EngineConfig(attention_backend="flash")


def test_llm_signature_and_help_are_built_from_the_config_fields():
    sig = inspect.signature(LLM)
    assert [(p.name, p.default) for p in sig.parameters.values()] == \
        [(f.name, f.default) for f in fields(EngineConfig)]
    # the contract's order for the first thirteen (vLLM's), so positional calls keep working
    assert list(sig.parameters)[:13] == [
        "model", "dtype", "device", "block_size", "num_kv_blocks", "gpu_memory_utilization", "max_num_seqs",
        "max_num_batched_tokens", "max_model_len", "enable_prefix_caching", "attention_backend",
        "tensor_parallel_size", "seed"]
    doc = LLM.__doc__
    assert all(f"{f.name}=" in doc for f in fields(EngineConfig))


def test_options_by_position_and_keyword(llama_dir):
    with LLM(llama_dir, "float32", "cpu", 8, 24) as llm:
        assert (llm.config.dtype, llm.config.block_size, llm.config.num_kv_blocks) == ("float32", 8, 24)
        assert llm.config.model == str(llama_dir)
    with pytest.raises(TypeError, match="multiple values for argument 'dtype'"):
        LLM(llama_dir, "float32", dtype="float32")
    with pytest.raises(TypeError, match="unknown engine option"):
        LLM(llama_dir, max_num_seq=3)
