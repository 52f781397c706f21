"""The few numbers our model code needs, read once from a transformers config (v4 or v5 field names)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict | None          # {"rope_type": ..., ...} or None
    max_position_embeddings: int
    qkv_bias: bool                     # Qwen2: q/k/v carry a bias
    o_bias: bool
    mlp_bias: bool
    qk_norm: bool                      # Qwen3: RMSNorm on each head of q and k before RoPE
    tie_word_embeddings: bool
    sliding_window: int | None

    @classmethod
    def from_hf(cls, hf, architecture: str) -> "ModelConfig":
        act = getattr(hf, "hidden_act", "silu")
        if act not in ("silu", "swish"):
            raise ValueError(f"{architecture}: hidden_act={act!r} is not supported (only silu)")
        heads = hf.num_attention_heads
        head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // heads
        rope = _rope_parameters(hf)
        theta = float(rope.pop("rope_theta", getattr(hf, "rope_theta", 10000.0)))
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        family = architecture.lower()
        qwen2 = family.startswith("qwen2")
        attention_bias = bool(getattr(hf, "attention_bias", False))
        window = getattr(hf, "sliding_window", None)
        if family.startswith("qwen") and not getattr(hf, "use_sliding_window", False):
            window = None                  # Qwen configs carry a window they do not use
        return cls(
            architecture=architecture,
            vocab_size=hf.vocab_size,
            hidden_size=hf.hidden_size,
            intermediate_size=hf.intermediate_size,
            num_layers=hf.num_hidden_layers,
            num_heads=heads,
            num_kv_heads=getattr(hf, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            rms_norm_eps=float(hf.rms_norm_eps),
            rope_theta=theta,
            rope_scaling=None if rope_type == "default" else {**rope, "rope_type": rope_type},
            max_position_embeddings=int(getattr(hf, "max_position_embeddings", 2048)),
            qkv_bias=True if qwen2 else attention_bias,
            o_bias=False if qwen2 else attention_bias,
            mlp_bias=bool(getattr(hf, "mlp_bias", False)),
            qk_norm=family.startswith("qwen3"),
            tie_word_embeddings=bool(getattr(hf, "tie_word_embeddings", False)),
            sliding_window=window,
        )


def _rope_parameters(hf) -> dict:
    # transformers v5 folds rope_theta and rope_scaling into `rope_parameters`; v4 keeps them apart
    params = getattr(hf, "rope_parameters", None)
    if isinstance(params, dict) and params:
        return dict(params)
    scaling = getattr(hf, "rope_scaling", None)
    return dict(scaling) if isinstance(scaling, dict) else {}
