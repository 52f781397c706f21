"""Tiny random-weight models with real HF configs and a tokenizer trained on the spot.

Nothing is downloaded: each family is built from its transformers config class, saved with
save_pretrained (safetensors), next to a byte-level BPE tokenizer trained with `tokenizers`.
"""
from __future__ import annotations

from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A paged KV cache stores keys and values in fixed-size blocks.",
    "Continuous batching schedules requests at every iteration.",
    "Once upon a time there was a little model that wanted to write stories.",
    "Notebooks keep one engine alive inside the kernel process.",
    "请解释量子计算的基本原理。量子比特可以处于叠加态。",
    "我们在笔记本里运行一个推理引擎，不需要重启内核。",
    "日本語のテキストも少し含めます。こんにちは世界。",
    "Emoji too: 🚀 ✨ 🤖 and accents: café naïve façade.",
    "def generate(prompt, max_tokens=16):\n    return engine.submit(prompt)\n",
] * 20

FAMILIES = ("llama", "llama3", "mistral", "qwen2", "qwen3")


def train_tokenizer(out: Path, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<s>", "</s>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return fast


def hf_config(family: str, vocab_size: int, **overrides):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

    common = dict(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  rms_norm_eps=1e-6, bos_token_id=0, eos_token_id=1, initializer_range=0.2)
    if family == "llama":
        cfg = LlamaConfig(**{**common, "num_key_value_heads": 4})
    elif family == "llama3":
        cfg = LlamaConfig(**common, rope_theta=500000.0,
                          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    elif family == "mistral":
        cfg = MistralConfig(**{**common, "num_key_value_heads": 1}, sliding_window=None)
    elif family == "qwen2":
        cfg = Qwen2Config(**common, tie_word_embeddings=True)
    elif family == "qwen3":
        cfg = Qwen3Config(**common, head_dim=32, tie_word_embeddings=False)
    else:
        raise ValueError(family)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def build_tiny_model(out: Path, family: str = "llama", seed: int = 0, max_shard_size: str | None = None,
                     bf16_exact: bool = False, **overrides) -> Path:
    """bf16_exact: every weight a bf16 value (saved as fp32), so a bf16 load holds the same numbers."""
    from transformers import AutoModelForCausalLM

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(out)
    cfg = hf_config(family, overrides.pop("vocab_size", len(tok)), **overrides)
    cfg.architectures = [{"llama": "LlamaForCausalLM", "llama3": "LlamaForCausalLM",
                          "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                          "qwen3": "Qwen3ForCausalLM"}[family]]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():   # larger weights than the default init: peaked logits, few near-ties
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.25 if "embed" in name else 1.0 / p.shape[1] ** 0.5 * 1.5)
            elif "norm" not in name:
                p.normal_(0.0, 0.1)
            if bf16_exact:
                p.copy_(p.bfloat16().float())
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out, safe_serialization=True, **kwargs)
    return out
