"""GGUF checkpoints (llama.cpp's one-file format): config, tokenizer and weights, all from the file.

A GGUF file is read in two parts:
- Its metadata becomes an ordinary model folder, once, in the cache: config.json and the tokenizer
  files (written by transformers' own GGUF readers), generation_config.json (the file's end-of-generation
  ids and sampling recommendations) and gguf_source.json (where the file is, and the gguf library's
  table of its tensors: name, type, byte offset, shape). The rest of nbinfer sees a plain folder, and
  later loads never parse the file again (the gguf reader turns a 49k-token vocabulary into ~150k numpy
  objects: seconds and ~160 MB each time).
- Its tensors are mapped from that table, dequantized by the `gguf` library one at a time and handed
  to the loader, which copies each into our model in the engine's dtype: peak memory is one copy of the
  weights plus one tensor.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .cache_dir import cache_root

SOURCE_FILE = "gguf_source.json"
_FORMAT = 2          # bump when the derived folder's contents change, so old cache entries are not reused

# transformers' model_type for a GGUF file -> our architecture name
ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                 "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}

# llama.cpp's end-of-generation tokens: generation stops at any of them
_EOG_KEYS = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id")
# GGUF's sampling recommendations (general.sampling.*) -> generation_config.json names
_SAMPLING_KEYS = {"temp": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p",
                  "penalty_repeat": "repetition_penalty"}


def find_gguf(path: Path) -> Path | None:
    """The GGUF file `path` names: the file itself, or the one .gguf in a folder without config.json."""
    if path.is_file():
        return path if path.suffix.lower() == ".gguf" else None
    if not path.is_dir() or (path / "config.json").exists():
        return None
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".gguf")
    if len(files) > 1:
        raise ValueError(f"model folder {str(path)!r} holds {len(files)} .gguf files "
                         f"({', '.join(p.name for p in files)}); pass the one to load")
    return files[0] if files else None


def model_folder(file: Path) -> Path:
    """The cached folder of config, tokenizer and generation settings derived from `file` (made once)."""
    import transformers

    file = file.resolve()
    stat = file.stat()
    versions = f"{transformers.__version__}|{importlib.metadata.version('gguf')}|{_FORMAT}"
    key = hashlib.sha256(f"{file}|{stat.st_size}|{stat.st_mtime_ns}|{versions}".encode()).hexdigest()[:16]
    folder = cache_root() / "gguf" / f"{file.stem}-{key}"
    if (folder / SOURCE_FILE).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    try:
        _write_folder(file, tmp)
        try:
            os.rename(tmp, folder)          # atomic: a reader never sees half a folder
        except OSError:
            if not (folder / SOURCE_FILE).exists():   # not just another process finishing first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def source_file(folder: Path) -> Path | None:
    """The GGUF file behind a folder made by model_folder(), or None for any other folder."""
    marker = folder / SOURCE_FILE
    if not marker.exists():
        return None
    file = Path(json.loads(marker.read_text())["path"])
    if not file.exists():
        raise ValueError(f"the GGUF file {file} behind {folder} is gone; load it again from where it is now")
    return file


def _write_folder(file: Path, out: Path) -> None:
    from gguf import GGUFReader
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(file.parent, gguf_file=file.name)
    except Exception as e:      # an architecture transformers cannot read, a damaged file, ...
        raise ValueError(f"cannot read the GGUF file {file}: {_first_line(e)}") from None
    arch = ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise ValueError(f"the GGUF file {file} holds a {config.model_type!r} model, which nbinfer does not "
                         f"support (supported: {', '.join(ARCHITECTURES)})")
    reader = GGUFReader(file)
    _check_types(reader, file)
    fields = reader.fields
    gguf_arch = str(fields["general.architecture"].contents())
    # transformers takes Qwen's head size from its config class's default, not from the file (a
    # Qwen3 whose head_dim is not 128 would load wrong); llama.cpp writes it as the key length
    key_length = fields.get(f"{gguf_arch}.attention.key_length")
    if key_length is not None:
        config.head_dim = int(key_length.contents())
    config.architectures = [arch]
    config.save_pretrained(out)
    try:
        AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name).save_pretrained(out)
    except Exception as e:
        raise ValueError(f"cannot build a tokenizer from the GGUF file {file}: {_first_line(e)}") from None
    generation = {"eos_token_id": sorted({int(fields[k].contents()) for k in _EOG_KEYS if k in fields})}
    for key, name in _SAMPLING_KEYS.items():
        if f"general.sampling.{key}" in fields:
            generation[name] = fields[f"general.sampling.{key}"].contents()
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
    table = [{"name": t.name, "type": t.tensor_type.name, "offset": int(t.data_offset),
              "dtype": t.data.dtype.str, "shape": list(t.data.shape)} for t in reader.tensors]
    source = {"path": str(file), "architecture": gguf_arch, "tensors": table}
    (out / SOURCE_FILE).write_text(json.dumps(source))


def _check_types(reader, file: Path) -> None:
    """Fail before loading anything if some tensor type is one the gguf library cannot dequantize."""
    from gguf import dequantize
    first_of_type = {}
    for t in reader.tensors:
        first_of_type.setdefault(t.tensor_type, t)
    for qtype, t in first_of_type.items():
        try:
            dequantize(t.data[:1], qtype)        # one row is enough to know
        except NotImplementedError:
            raise ValueError(f"the GGUF file {file} stores tensor {t.name} as {qtype.name}, which the gguf "
                             "library cannot dequantize") from None


def tensors(folder: Path, model) -> Iterator[tuple[str, Callable[[], torch.Tensor]]]:
    """(HF checkpoint name, read()) for each tensor of the GGUF file behind `folder` that our model has
    a place for; read() dequantizes that one tensor to fp32 and undoes llama.cpp's storage quirks as
    transformers does."""
    from gguf import GGMLQuantizationType, dequantize
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    file = source_file(folder)
    source = json.loads((folder / SOURCE_FILE).read_text())
    arch = source["architecture"]
    names = _gguf_to_hf_names(arch, model)
    cfg = model.cfg
    # llama.cpp stores Llama's q/k rows permuted for its rope layout; the processor permutes them back
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(
        config={"num_attention_heads": cfg.num_heads, "num_key_value_heads": cfg.num_kv_heads})
    mapped = np.memmap(file, dtype=np.uint8, mode="r")

    def read(entry: dict) -> torch.Tensor:
        dtype = np.dtype(entry["dtype"])
        count = int(np.prod(entry["shape"]))
        data = mapped[entry["offset"]:entry["offset"] + count * dtype.itemsize].view(dtype).reshape(entry["shape"])
        weights = dequantize(data, GGMLQuantizationType[entry["type"]])
        weights = processor.process(weights=weights, name=entry["name"], tensor_key_mapping=names,
                                    parsed_parameters={}).weights
        # F32 tensors come back as views of the read-only file mapping: torch needs a writable array
        return torch.from_numpy(np.require(weights, np.float32, ["C", "W"]))

    for entry in source["tensors"]:
        if entry["name"] in names:     # others (e.g. rope_freqs) are derived from the config, as in transformers
            yield names[entry["name"]], functools.partial(read, entry)


def _gguf_to_hf_names(arch: str, model) -> dict[str, str]:
    """GGUF tensor name (blk.0.attn_q.weight) -> HF checkpoint name (model.layers.0.self_attn.q_proj.weight),
    for every checkpoint tensor our model takes (merged projections listed by their parts)."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    arch_id = next((k for k, v in MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        raise ValueError(f"the gguf library does not know the GGUF architecture {arch!r}; upgrade gguf")
    name_map = get_tensor_name_map(arch_id, model.cfg.num_layers)
    parts_of: dict[str, list[str]] = {}
    for part, (merged, _) in model.stacked_params.items():
        parts_of.setdefault(merged, []).append(part)
    names = {}
    for pname, _ in model.named_parameters():
        *prefix, module, kind = pname.split(".")
        for part in parts_of.get(module, [module]):
            hf_module = ".".join([*prefix, part])
            gguf_module = name_map.get_name(hf_module)
            if gguf_module is not None:
                names[f"{gguf_module}.{kind}"] = f"{hf_module}.{kind}"
    return names


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
