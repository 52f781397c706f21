"""Find a model, build our module for its architecture, stream its weights.

A model is a local folder, a GGUF file (or a folder holding one), a named model (fetched once), the
bundled model (None or "bundled"), or a Hugging Face hub id. Weights come from safetensors (one file or
shards listed by model.safetensors.index.json, mmap'd) or from a GGUF file (dequantized one tensor at a
time) and are copied tensor by tensor to the device in the target dtype, so peak host memory stays near
one copy of the weights plus one tensor.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import torch

from . import gguf_file
from .config import ModelConfig
from .llama import LlamaForCausalLM
from .named import BUNDLED, NAMED_MODELS, FetchError, named_model_file

ARCHITECTURES = {
    "LlamaForCausalLM": LlamaForCausalLM,
    "MistralForCausalLM": LlamaForCausalLM,
    "Qwen2ForCausalLM": LlamaForCausalLM,
    "Qwen3ForCausalLM": LlamaForCausalLM,
}

_HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.jinja"]


def default_model_path() -> Path:
    """The small model bundled with the package (trained by scripts/train_default_model.py)."""
    return Path(__file__).resolve().parent.parent / "assets" / "default_model"


def resolve_model_path(model: str | os.PathLike | None, revision: str | None = None) -> Path:
    """The folder to load: a model folder as given, the cached folder derived from a GGUF file, the
    bundled model's folder, or a hub snapshot. Named models are fetched on first use."""
    path = None if model is None else Path(model).expanduser()
    if path is None or (str(model) == BUNDLED and not path.exists()):
        path = default_model_path()
        if not (path / "config.json").exists():
            raise ValueError(f"the bundled default model is missing at {path}; reinstall nbinfer")
        return path
    if not path.exists() and str(model) in NAMED_MODELS:
        try:
            path = named_model_file(str(model))
        except FetchError as e:
            raise ValueError(f"model {str(model)!r} could not be fetched: {e}") from None
    if path.exists():
        gguf = gguf_file.find_gguf(path)
        if gguf is not None:
            return gguf_file.model_folder(gguf)
        if not path.is_dir():
            raise ValueError(f"model path {str(path)!r} is a file; pass the folder holding config.json "
                             "or a .gguf file")
        if not (path / "config.json").exists():
            raise ValueError(f"model folder {str(path)!r} has no config.json (and no .gguf file)")
        return path
    name = str(model)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or not name.strip() or name.endswith(".gguf"):
        raise ValueError(f"model path {name!r} does not exist")
    from huggingface_hub import snapshot_download
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=_HUB_PATTERNS))
    except Exception as e:  # offline, unknown repo, gated, ...: one sentence, not a traceback
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"model {name!r} is not a local folder and the Hugging Face hub could not provide "
                         f"it: {reason}") from None


def load_hf_config(path: Path, trust_remote_code: bool = False):
    from transformers import AutoConfig
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as e:
        raise ValueError(f"cannot read the model config in {path}: {e}") from None


def architecture_of(hf_config, path: Path) -> str:
    archs = getattr(hf_config, "architectures", None) or []
    for arch in archs:
        if arch in ARCHITECTURES:
            return arch
    shown = ", ".join(archs) or f"model_type={getattr(hf_config, 'model_type', '?')}"
    raise ValueError(f"model at {path} has architecture {shown}, which nbinfer does not support "
                     f"(supported: {', '.join(ARCHITECTURES)})")


def weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = [path / f for f in dict.fromkeys(weight_map.values())]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise ValueError(f"{index} lists shards that are missing: {', '.join(missing)}")
        return files
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ValueError(f"no .safetensors weights in {path} (only safetensors checkpoints are supported)")
    return files


def build_model(cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """Allocate the module on the device without initialising it (the checkpoint fills every tensor)."""
    with torch.device("meta"):
        model = ARCHITECTURES[cfg.architecture](cfg)
    model = model.to(dtype=dtype).to_empty(device=device)
    if cfg.tie_word_embeddings:    # to_empty unties shared parameters
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval().requires_grad_(False)


@torch.no_grad()
def load_weights(model: torch.nn.Module, path: Path) -> None:
    params = dict(model.named_parameters())
    loaded: set[str] = set()
    for where, name, read in _checkpoint_tensors(model, path):
        target = _place(model, params, name)
        if target is None:
            continue
        pname, (offset, size) = target
        dst = params[pname]
        if size is not None:
            dst = dst.narrow(0, offset, size)
        src = read()
        if src.shape != dst.shape:
            raise ValueError(f"{where}: {name} has shape {tuple(src.shape)}, the model expects {tuple(dst.shape)}")
        dst.copy_(src)
        loaded.add(pname if size is None else f"{pname}#{offset}")
    expected = set()
    for pname in params:
        merged = pname.split(".")[-2]
        if merged in ("qkv_proj", "gate_up_proj"):
            shards = 3 if merged == "qkv_proj" else 2
            expected |= {f"{pname}#{model.shard_slice(merged, i)[0]}" for i in range(shards)}
        else:
            expected.add(pname)
    if model.cfg.tie_word_embeddings:
        expected.discard("lm_head.weight")
    missing = sorted(expected - loaded)
    if missing:
        raise ValueError(f"checkpoint in {path} lacks {len(missing)} tensor(s), e.g. {missing[0].split('#')[0]}")


def _checkpoint_tensors(model, path: Path):
    """(file name for errors, HF checkpoint name, read()) for every tensor of the checkpoint; read() gives
    the tensor, so one that the model skips is never read."""
    gguf = gguf_file.source_file(path)
    if gguf is not None:
        for name, read in gguf_file.tensors(path, model):
            yield gguf.name, name, read
        return
    from safetensors import safe_open
    for file in weight_files(path):
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for name in f.keys():
                yield file.name, name, functools.partial(f.get_tensor, name)


@torch.no_grad()
def init_dummy_weights(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights of the right shapes (load_format="dummy"): same compute as real ones, no files.
    Norm weights are 1 so activations stay in range; matrices ~ N(0, 0.02) like HF's init."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for name, p in model.named_parameters():
        if "norm" in name:
            p.fill_(1.0)
        else:
            p.normal_(0.0, 0.02, generator=gen)


def _place(model, params: dict, name: str):
    """Where a checkpoint tensor goes: (our parameter name, (offset, size|None)), or None to skip."""
    if "rotary_emb" in name:
        return None
    if name == "lm_head.weight" and model.cfg.tie_word_embeddings:
        return None
    parts = name.split(".")
    if len(parts) >= 2 and parts[-2] in model.stacked_params:
        merged, shard = model.stacked_params[parts[-2]]
        pname = ".".join(parts[:-2] + [merged, parts[-1]])
        return pname, model.shard_slice(merged, shard)
    if name in params:
        return name, (0, None)
    raise ValueError(f"checkpoint tensor {name!r} does not belong to {model.cfg.architecture}")
