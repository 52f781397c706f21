"""Named model shapes for benchmarks: an HF config and a synthetic tokenizer, weights random.

Random weights cost exactly the compute of real ones, and workloads use random token ids with
ignore_eos, so no checkpoint or download is needed: nbinfer loads with load_format="dummy" and HF
builds the same architecture with from_config.
"""
from __future__ import annotations

import json
from pathlib import Path

SHAPES: dict[str, dict] = {
    # ~10M parameters: the CPU comparison model (lm_head dominates, like small real models)
    "tiny": dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000, hidden_size=256,
                 intermediate_size=768, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                 max_position_embeddings=16384, rope_theta=10000.0, rms_norm_eps=1e-5,
                 tie_word_embeddings=False),
    "Qwen2.5-0.5B": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=151936,
                         hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
                         rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False),
    "Llama-2-7B": dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000, hidden_size=4096,
                       intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=32, max_position_embeddings=16384, rope_theta=10000.0,
                       rms_norm_eps=1e-5, tie_word_embeddings=False),
    "Llama-3-8B": dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256,
                       hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                       num_key_value_heads=8, max_position_embeddings=16384, rope_theta=500000.0,
                       rms_norm_eps=1e-5, tie_word_embeddings=False),
}
# Llama-2's real context is 4096; the seed's 8192-token workload needs more, and RoPE computes the
# same at any length, so the shapes allow 16k.


def make_model_dir(shape: str, root: Path) -> Path:
    """A folder with config.json and a tokenizer for `shape` (no weights); reused if present."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose one of: {', '.join(SHAPES)}")
    out = Path(root) / shape
    if (out / "config.json").exists() and (out / "tokenizer.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(SHAPES[shape], bos_token_id=1, eos_token_id=2, hidden_act="silu", torch_dtype="bfloat16")
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    _write_tokenizer(out, cfg["vocab_size"])
    return out


def _write_tokenizer(out: Path, vocab_size: int) -> None:
    """A word-level tokenizer with exactly vocab_size entries (t0 … tN): workloads send token ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="t1", eos_token="t2", pad_token="t0").save_pretrained(out)
