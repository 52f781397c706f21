"""Synthetic workloads: random prompt token ids and fixed output lengths (ignore_eos)."""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Workload:
    name: str
    prompts: list[list[int]]
    output_lens: list[int]
    shared_prefix_len: int = 0

    @property
    def input_tokens(self) -> int:
        return sum(map(len, self.prompts))

    @property
    def output_tokens(self) -> int:
        return sum(self.output_lens)


WORKLOADS = {
    "single": "one chat prompt, 256 output tokens: time to first token and single-stream decode speed",
    "batch": "input uniform 200-500 / output 128, all at once (prefill-heavy batch throughput)",
    "seed": "the seed's: input 2048 / output 512",
    "seed-8k": "the seed's long one: input 8192 / output 512",
    "mixed": "input uniform 100-1024 / output uniform 100-1024 (as nano-vllm measures)",
    "shared-prefix": "SGL-style programs: a common 1024-token few-shot prefix + 64-256 own tokens / output 64-256",
}


# the `single` workload's chat message (its token ids come from the model's chat template)
CHAT_MESSAGE = "Write a short story about a lighthouse keeper who finds a message in a bottle."
SINGLE_RANDOM_PROMPT_LEN = 40      # a model without a chat template gets this many random ids instead


def make_workload(name: str, num_prompts: int, vocab_size: int, seed: int = 0,
                  scale: float = 1.0, chat_prompt: list[int] | None = None) -> Workload:
    """`scale` shrinks every length (e.g. 0.25 for a quick CPU run); 1.0 is the definition above.
    `chat_prompt`: the token ids of CHAT_MESSAGE in the model's chat template (`single` only)."""
    rng = random.Random(seed)
    lo = 10 if vocab_size > 10 else 0   # skip the first ids (bos/eos/pad live there)

    def tokens(n):
        return [rng.randrange(lo, vocab_size) for _ in range(max(1, int(n * scale)))]

    def length(a, b):
        return max(1, int(rng.randint(a, b) * scale))

    if name == "single":     # one request, whatever num_prompts says
        prompt = list(chat_prompt) if chat_prompt else tokens(SINGLE_RANDOM_PROMPT_LEN)
        return Workload(name, [prompt], [length(256, 256)])
    if name == "batch":
        return Workload(name, [tokens(rng.randint(200, 500)) for _ in range(num_prompts)],
                        [length(128, 128)] * num_prompts)
    if name == "seed":
        return Workload(name, [tokens(2048) for _ in range(num_prompts)], [length(512, 512)] * num_prompts)
    if name == "seed-8k":
        return Workload(name, [tokens(8192) for _ in range(num_prompts)], [length(512, 512)] * num_prompts)
    if name == "mixed":
        prompts = [tokens(rng.randint(100, 1024)) for _ in range(num_prompts)]
        return Workload(name, prompts, [length(100, 1024) for _ in range(num_prompts)])
    if name == "shared-prefix":
        prefix = tokens(1024)
        prompts = [prefix + tokens(rng.randint(64, 256)) for _ in range(num_prompts)]
        return Workload(name, prompts, [length(64, 256) for _ in range(num_prompts)], len(prefix))
    raise ValueError(f"unknown workload {name!r}; choose one of: {', '.join(WORKLOADS)}")
