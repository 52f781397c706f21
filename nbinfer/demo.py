"""`nbinfer demo`: a few prompts through the engine as one batch, streamed to the terminal.

All prompts are submitted at once, so the engine batches them; their text is printed in order as it
streams (a later prompt's tokens wait in its handle while an earlier one is printed). With no --model
it runs the default model (smollm2-135m-instruct, fetched once; nbinfer/models/default_model.py) on a
few questions through its chat template. When that cannot be fetched it says so and runs the bundled
model, a ~2M-parameter Llama trained on simple synthetic stories, on story openings instead.
"""
from __future__ import annotations

import argparse
import sys
import time

QUESTIONS = [     # for a real model: asked through its chat template
    "What is the boiling point of water at sea level?",
    "Write a Python function that reverses a string.",
    "Give me three tips for a good night's sleep.",
]
COMPLETION = "The three primary colors are"     # and one plain completion, without the template
STORY_PROMPTS = [  # for the bundled story model: openings it knows, and a story request as a chat
    "Once upon a time, there was a little dog named Max.",
    "One sunny day, there was a curious girl named Lily.",
    "Long ago, there was a brave bunny named Tom.",
]
STORY_CHAT = "Tell me a story about a brave cat named Mia."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None,
                   help="folder, .gguf file, named model, 'bundled' or hub id (default: smollm2-135m-instruct)")
    p.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                   help="a prompt to complete (repeatable; replaces the built-in prompts)")
    p.add_argument("--max-tokens", type=int, default=120, metavar="N")
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="default: 0.2 (0.8 for the bundled story model)")
    p.add_argument("--top-p", type=float, default=None, metavar="P", help="default: 0.9 (0.95 for the bundled model)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (same seed, same text)")
    p.add_argument("--no-chat", action="store_true", help="plain completions only, no chat template")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")


def run(args: argparse.Namespace) -> int:
    from nbinfer import LLM, SamplingParams
    from nbinfer.engine.handle import cancel_all
    from nbinfer.models.default_model import interactive_default_model
    from nbinfer.models.named import BUNDLED

    style = _Style(sys.stdout.isatty())

    def sampling(temperature: float, top_p: float) -> SamplingParams:
        return SamplingParams(temperature=_given(args.temperature, temperature), top_p=_given(args.top_p, top_p),
                              max_tokens=args.max_tokens, seed=args.seed)

    sampling(1.0, 1.0)          # bad flags fail here, before a model is fetched or loaded
    model = args.model or interactive_default_model()     # None: the bundled model
    stories = model in (None, BUNDLED)
    # a small real model wanders when sampled hot (SmolLM2's authors suggest 0.2 / 0.9); the story
    # model's grammar is narrow enough for 0.8
    params = sampling(0.8, 0.95) if stories else sampling(0.2, 0.9)
    started = time.perf_counter()
    llm = LLM(model=model, device=args.device, dtype=args.dtype)
    with llm:
        s = llm.stats()
        print(style.dim(f"nbinfer demo · {s.model} · {s.device} · {s.dtype} · weights "
                        f"{s.weights_bytes / 2**20:.1f} MiB · loaded in {time.perf_counter() - started:.1f} s"))
        chat = not args.no_chat and getattr(llm.tokenizer, "chat_template", None)
        if args.prompt:
            prompts, asks = list(args.prompt), []
        elif stories:
            prompts, asks = list(STORY_PROMPTS), [STORY_CHAT]
        else:
            prompts, asks = [COMPLETION], list(QUESTIONS)
        if not chat:
            prompts, asks = prompts + asks, []
        shown = prompts + [f"user: {q}\nassistant: " for q in asks]
        prompts = prompts + [llm.apply_chat_template([{"role": "user", "content": q}]) for q in asks]

        t0 = time.perf_counter()
        handles = [llm.submit(p, params) for p in prompts]      # one batch: the engine runs them together
        try:
            for i, (h, text) in enumerate(zip(handles, shown)):
                print(f"\n{style.bold(f'[{i + 1}]')} {style.dim(text)}", end="", flush=True)
                for delta in h:
                    print(delta, end="", flush=True)
                print()
        except KeyboardInterrupt:
            cancel_all(handles)         # one engine step for the whole batch
            print("\ninterrupted")
            return 130
        outputs = [h.result() for h in handles]
        elapsed = time.perf_counter() - t0
        s = llm.stats()
        generated = sum(len(c.token_ids) for o in outputs for c in o.outputs)
        prompt_tokens = sum(len(o.prompt_token_ids) for o in outputs)
        print(style.dim(
            f"\n{_count(len(outputs), 'prompt')} in one batch (up to {s.peak_num_running} running at once): "
            f"{prompt_tokens} prompt + {generated} generated tokens in {elapsed:.2f} s = "
            f"{generated / elapsed:,.0f} tok/s · {s.steps_total} engine steps · KV cache "
            f"{s.blocks_total} blocks × {s.block_size} tokens"))
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _given(value, default):
    return default if value is None else value


class _Style:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def dim(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return f"\033[1m{text}\033[0m" if self.enabled else text
