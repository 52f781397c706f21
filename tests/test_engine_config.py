"""EngineConfig is where every engine option is written once: its help, the choice tuples, and the
attention backends' names (from the registry)."""
from dataclasses import fields

import pytest
import torch

from nbinfer.engine import config
from nbinfer.engine.attention import backend_names, make_backend, resolve_backend_name
from nbinfer.engine.config import EngineConfig


def test_choice_tuples_come_from_one_place():
    assert config.ATTENTION_BACKENDS == ("auto", *backend_names())
    assert set(backend_names()) == {"cpu", "torch", "triton"}
    for f in fields(EngineConfig):
        if f.metadata["choices"]:
            assert f.default in f.metadata["choices"], f.name
    assert dict((f.name, f.metadata["choices"]) for f in fields(EngineConfig) if f.metadata["choices"]) == {
        "dtype": config.DTYPES, "device": config.DEVICES, "attention_backend": config.ATTENTION_BACKENDS,
        "schedule_policy": config.SCHEDULE_POLICIES, "load_format": config.LOAD_FORMATS}
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
