"""`nbinfer demo`: a few prompts through the engine as one batch, streamed to the terminal.

All prompts are submitted at once, so the engine batches them; their text is printed in order as it
streams (a later prompt's tokens wait in its handle while an earlier one is printed). The bundled
default model is a ~2M-parameter Llama trained on simple synthetic stories: expect short children's
stories, not knowledge.
"""
from __future__ import annotations

import argparse
import sys
import time

PROMPTS = [       # story openings the default model knows; any text works with a real model
    "Once upon a time, there was a little dog named Max.",
    "One sunny day, there was a curious girl named Lily.",
    "Long ago, there was a brave bunny named Tom.",
]
CHAT_PROMPT = "Tell me a story about a brave cat named Mia."


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="local folder or hub id (default: the bundled default model)")
    p.add_argument("--prompt", action="append", default=None, metavar="TEXT",
                   help="a prompt to complete (repeatable; replaces the built-in prompts)")
    p.add_argument("--max-tokens", type=int, default=120, metavar="N")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T")
    p.add_argument("--top-p", type=float, default=0.95, metavar="P")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (same seed, same text)")
    p.add_argument("--no-chat", action="store_true", help="skip the chat-template example")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")


def run(args: argparse.Namespace) -> int:
    from nbinfer import LLM, SamplingParams
    from nbinfer.engine.handle import cancel_all

    style = _Style(sys.stdout.isatty())
    # bad flags fail before the model loads
    params = SamplingParams(temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                            seed=args.seed)
    started = time.perf_counter()
    llm = LLM(model=args.model, device=args.device, dtype=args.dtype)
    with llm:
        s = llm.stats()
        print(style.dim(f"nbinfer demo · {s.model} · {s.device} · {s.dtype} · weights "
                        f"{s.weights_bytes / 2**20:.1f} MiB · loaded in {time.perf_counter() - started:.1f} s"))
        prompts: list = list(args.prompt or PROMPTS)
        shown = list(prompts)
        if not args.no_chat and not args.prompt and getattr(llm.tokenizer, "chat_template", None):
            prompts.append(llm.apply_chat_template([{"role": "user", "content": CHAT_PROMPT}]))
            shown.append(f"user: {CHAT_PROMPT}\nassistant: ")

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


class _Style:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def dim(self, text: str) -> str:
        return f"\033[2m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return f"\033[1m{text}\033[0m" if self.enabled else text
