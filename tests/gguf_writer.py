"""Write a tiny test model (tests/tiny_models.py) as a GGUF file, the way llama.cpp's converter lays one
out: llama.cpp's metadata keys and tensor names, Llama's q/k rows permuted for its rope layout, tensors
stored in a chosen type (quantized with the gguf library). Only for tests: nbinfer itself reads GGUF."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# our tiny families -> (GGUF architecture, general.name); llama.cpp files Mistral under "llama", and
# transformers tells it apart by the name
GGUF_ARCH = {"llama": ("llama", "tiny-llama"), "mistral": ("llama", "tiny-mistral"),
             "qwen2": ("qwen2", "tiny-qwen2"), "qwen3": ("qwen3", "tiny-qwen3")}
CONTROL, NORMAL = 3, 1


def permute_for_llama_cpp(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of Llama q/k projection rows."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model_dir: Path, out: Path, family: str, qtype_of=lambda name, shape: "F32") -> Path:
    """qtype_of(gguf tensor name, shape) -> a GGMLQuantizationType name for that tensor."""
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoConfig

    from nbinfer.models.config import ModelConfig

    arch, name = GGUF_ARCH[family]
    hf = AutoConfig.from_pretrained(model_dir)
    cfg = ModelConfig.from_hf(hf, hf.architectures[0])
    w = gguf.GGUFWriter(str(out), arch)
    w.add_name(name)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_heads)
    w.add_head_count_kv(cfg.num_kv_heads)
    w.add_key_length(cfg.head_dim)
    w.add_value_length(cfg.head_dim)
    w.add_rope_dimension_count(cfg.head_dim)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)

    tok = json.loads((model_dir / "tokenizer.json").read_text())
    tok_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab = {**tok["model"]["vocab"], **{t["content"]: t["id"] for t in tok["added_tokens"]}}
    tokens = sorted(vocab, key=vocab.get)
    special = {t["content"] for t in tok["added_tokens"] if t["special"]}
    w.add_tokenizer_model("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([CONTROL if t in special else NORMAL for t in tokens])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]])
    w.add_bos_token_id(vocab[tok_config["bos_token"]])
    w.add_eos_token_id(vocab[tok_config["eos_token"]])
    w.add_add_bos_token(False)
    w.add_chat_template(tok_config.get("chat_template") or (model_dir / "chat_template.jinja").read_text())

    name_map = gguf.get_tensor_name_map(next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch),
                                        cfg.num_layers)
    tensors = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        tensors.update(load_file(f))
    for hf_name, data in tensors.items():
        base, kind = hf_name.rsplit(".", 1)
        gguf_name = f"{name_map.get_name(base)}.{kind}"
        data = data.astype(np.float32)
        if arch == "llama" and base.endswith("q_proj"):
            data = permute_for_llama_cpp(data, cfg.num_heads)
        elif arch == "llama" and base.endswith("k_proj"):
            data = permute_for_llama_cpp(data, cfg.num_kv_heads)
        qtype = gguf.GGMLQuantizationType[qtype_of(gguf_name, data.shape)]
        stored = data if qtype == gguf.GGMLQuantizationType.F32 else gguf.quants.quantize(data, qtype)
        w.add_tensor(gguf_name, stored, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
