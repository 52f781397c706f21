"""Train nbinfer's bundled default model: a ~2M-parameter Llama that writes simple English stories.

    python scripts/train_default_model.py            # ~20 min on 2 CPU threads; writes nbinfer/assets/default_model
    python scripts/train_default_model.py --steps 20 --out /tmp/m    # smoke run

Training text: stories and chat turns produced by the grammar in scripts/story_grammar.py, written for
this project and released under its Apache-2.0 license; no third-party text is used. Everything is
seeded (grammar, tokenizer training, weight init, batch order), so a rerun with the same torch and
tokenizers versions on the same thread count reproduces the files.

The output is a plain Hugging Face checkpoint (LlamaForCausalLM config, safetensors weights in bf16,
a byte-level BPE tokenizer trained with `tokenizers`, a chat template, bos/eos), so nbinfer's engine
and transformers both load it. The training uses transformers' LlamaForCausalLM; nbinfer's own model
code is only used for the final check that the engine loads the result.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import story_grammar  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "nbinfer" / "assets" / "default_model"
SEED = 1234

VOCAB_SIZE = 1024          # the grammar has ~450 words: a 1024-token BPE holds nearly all as one token
SPECIAL = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
MODEL = dict(hidden_size=192, intermediate_size=512, num_hidden_layers=4, num_attention_heads=6,
             num_key_value_heads=3, max_position_embeddings=512, rms_norm_eps=1e-5, rope_theta=10000.0,
             tie_word_embeddings=True, hidden_act="silu")
SEQ_LEN = 256
BATCH = 16
STEPS = 2000
PEAK_LR = 3e-3
WARMUP = 30
CHAT_FRACTION = 0.3


def corpus(rng: random.Random, n: int) -> list:
    """n documents: a story (str) or a chat conversation (list of messages)."""
    return [story_grammar.chat_example(rng) if rng.random() < CHAT_FRACTION else story_grammar.story(rng)
            for _ in range(n)]


def train_tokenizer(docs: list):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    def texts():
        for d in docs:
            if isinstance(d, str):
                yield d
            else:
                for m in d:
                    yield m["content"]

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts(), trainer)
    # like Llama: encode() starts every prompt with <s>, which is how every training document starts
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>",
                                   additional_special_tokens=["<|im_start|>", "<|im_end|>"],
                                   model_max_length=MODEL["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def token_stream(tok, docs: list) -> tuple[torch.Tensor, torch.Tensor]:
    """All documents packed end to end (<s> story </s>, or the rendered chat followed by </s>),
    and the offset where each document starts."""
    texts = [tok.bos_token + d if isinstance(d, str) else tok.apply_chat_template(d, tokenize=False)
             for d in docs]
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    flat = [t for doc in ids for t in (*doc, eos)]
    starts = torch.tensor([0] + [len(d) + 1 for d in ids[:-1]]).cumsum(0)
    return torch.tensor(flat, dtype=torch.long), starts


def lr_at(step: int, steps: int) -> float:
    if step < WARMUP:
        return PEAK_LR * (step + 1) / WARMUP
    progress = (step - WARMUP) / max(1, steps - WARMUP)
    return PEAK_LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def batches(stream: torch.Tensor, doc_starts: torch.Tensor, steps: int, gen: torch.Generator):
    """SEQ_LEN windows that begin where a document begins, as every prompt does: a story's
    characters are then always in context, which is what teaches the model to keep names straight."""
    usable = doc_starts[doc_starts < len(stream) - SEQ_LEN]
    for _ in range(steps):
        picks = usable[torch.randint(0, len(usable), (BATCH,), generator=gen)]
        yield torch.stack([stream[s:s + SEQ_LEN] for s in picks.tolist()])


@torch.no_grad()
def eval_loss(model, stream: torch.Tensor, doc_starts: torch.Tensor) -> float:
    """Mean loss on held-out windows that start at a document start, like the training windows."""
    model.eval()
    starts = doc_starts[doc_starts < len(stream) - SEQ_LEN][:64]
    windows = torch.stack([stream[s:s + SEQ_LEN] for s in starts.tolist()])
    losses = [model(input_ids=w, labels=w).loss.item() for w in windows.split(16)]
    model.train()
    return sum(losses) / len(losses)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.set_num_threads(args.threads)
    random.seed(SEED)
    torch.manual_seed(SEED)
    rng = random.Random(SEED)

    tokens_needed = args.steps * BATCH * SEQ_LEN
    docs = corpus(rng, max(2000, int(tokens_needed / 150)))     # ~150 tokens a document
    held_out = corpus(random.Random(SEED + 1), 400)
    tok = train_tokenizer(docs[:20000])
    (stream, doc_starts), (val_stream, val_starts) = token_stream(tok, docs), token_stream(tok, held_out)
    print(f"corpus: {len(docs)} documents, {len(stream)} tokens; vocab {len(tok)}", flush=True)

    config = LlamaConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, **MODEL)
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    print(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=PEAK_LR, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(SEED)
    model.train()
    started = time.monotonic()
    for step, x in enumerate(batches(stream, doc_starts, args.steps, gen)):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.steps)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == args.steps - 1:
            elapsed = time.monotonic() - started
            print(f"step {step:4d}/{args.steps}  loss {loss.item():.3f}  lr {lr_at(step, args.steps):.2e}  "
                  f"{(step + 1) * BATCH * SEQ_LEN / elapsed:,.0f} tok/s  {elapsed / 60:.1f} min", flush=True)
    val = eval_loss(model, val_stream, val_starts)
    minutes = (time.monotonic() - started) / 60
    print(f"held-out loss {val:.3f} (perplexity {math.exp(val):.2f}) after {minutes:.1f} min", flush=True)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*"):
        if old.is_file() and old.name != "README.md":
            old.unlink()
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=[tok.eos_token_id, im_end],
                     pad_token_id=tok.pad_token_id, do_sample=True, temperature=0.8, top_p=0.95,
                     max_new_tokens=200).save_pretrained(out)
    info = {
        "script": "scripts/train_default_model.py", "seed": SEED, "steps": args.steps, "batch": BATCH,
        "seq_len": SEQ_LEN, "peak_lr": PEAK_LR, "documents": len(docs), "train_tokens": len(stream),
        "tokens_seen": args.steps * BATCH * SEQ_LEN, "held_out_loss": round(val, 4),
        "minutes": round(minutes, 1), "threads": args.threads, "torch": torch.__version__,
        "training_text": "synthetic stories from scripts/story_grammar.py (Apache-2.0, written for nbinfer)",
    }
    (out / "training.json").write_text(json.dumps(info, indent=2) + "\n")
    write_readme(out, info, sum(p.numel() for p in model.parameters()))
    size = sum(f.stat().st_size for f in out.glob("*")) / 2**20
    print(f"wrote {out} ({size:.1f} MiB)")
    check(out)
    return 0


def write_readme(out: Path, info: dict, num_params: int) -> None:
    m = MODEL
    (out / "README.md").write_text(f"""# nbinfer default model

A {num_params / 1e6:.1f}M-parameter Llama (LlamaForCausalLM: {m['num_hidden_layers']} layers, hidden {m['hidden_size']},
{m['num_attention_heads']} heads / {m['num_key_value_heads']} KV heads, SwiGLU {m['intermediate_size']}, tied embeddings,
context {m['max_position_embeddings']}) with a {VOCAB_SIZE}-token byte-level BPE tokenizer, shipped so that
`nbinfer demo`, the notebooks and `%nbinfer load` work with no download. Weights are bf16 safetensors.

It writes short, simple children's stories in English and answers chat requests for a story
(`<|im_start|>role ... <|im_end|>` template, `<s>`/`</s>`; generation stops at `</s>` or `<|im_end|>`).
It knows nothing beyond its training grammar: use it to try the engine, not to ask questions.

## Training text and license

All training text is synthetic: stories and chat turns generated by the grammar in
`scripts/story_grammar.py`, written for nbinfer and released with it under the **Apache-2.0**
license. No third-party text was used. The weights and tokenizer are likewise Apache-2.0.

## Reproduce

    python scripts/train_default_model.py      # writes this folder

Seeded throughout (seed {info['seed']}): grammar sampling, tokenizer training, initialisation and batch
order. {info['steps']} AdamW steps of {info['batch']} x {info['seq_len']} tokens ({info['tokens_seen']:,} tokens seen,
cosine schedule, peak lr {info['peak_lr']}) on {info['threads']} CPU threads took {info['minutes']} minutes here
(torch {info['torch']}); held-out loss {info['held_out_loss']} nats/token. The same torch and tokenizers versions
on the same thread count reproduce the files; other versions give a model of the same quality.
See `training.json`.
""")


def check(path: Path) -> None:
    """Load the result with nbinfer's own engine and print a few samples."""
    sys.path.insert(0, str(ROOT))
    from nbinfer import LLM, SamplingParams
    with LLM(str(path), num_kv_blocks=256) as llm:
        outs = llm.generate(["Once upon a time", "One day, a little dog named Max"],
                            SamplingParams(temperature=0.8, top_p=0.95, max_tokens=120, seed=0))
        for o in outs:
            print("---", o.prompt + o.outputs[0].text)
        chat = llm.chat([{"role": "user", "content": "Tell me a story about a cat named Tom."}],
                        SamplingParams(temperature=0.0, max_tokens=160))
        print("--- chat:", chat[0].outputs[0].text)


if __name__ == "__main__":
    sys.exit(main())
