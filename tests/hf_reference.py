"""The reference our engine must equal: a plain HF transformers forward-pass loop, fp32 on CPU."""
from __future__ import annotations

import inspect

import torch

NEAR_TIE = 1e-3


class HFReference:
    def __init__(self, path, gguf_file: str | None = None, use_cache: bool = False):
        """gguf_file: load that GGUF file in `path` with transformers' own GGUF loader. use_cache: greedy
        decodes with HF's KV cache and remembers its results (for a real model, where recomputing the
        whole sequence per token is too slow and several engines are compared with one reference)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer
        extra = {"gguf_file": gguf_file} if gguf_file else {}
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **extra).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path, **extra)
        self.use_cache = use_cache
        self._greedy: dict = {}

    @torch.no_grad()
    def logprobs(self, ids: list[int]) -> torch.Tensor:
        """[len(ids), V] log-softmax of the next-token logits at every position."""
        return torch.log_softmax(self.model(torch.tensor([ids])).logits[0].float(), dim=-1)

    def greedy(self, prompt_ids: list[int], max_tokens: int):
        """Greedy continuation; returns (tokens, log-softmax rows used for each choice)."""
        if not self.use_cache:
            return self._greedy_recomputed(prompt_ids, max_tokens)
        key = (tuple(prompt_ids), max_tokens)
        if key not in self._greedy:
            self._greedy[key] = self._greedy_cached(prompt_ids, max_tokens)
        return self._greedy[key]

    @torch.no_grad()
    def _greedy_cached(self, prompt_ids: list[int], max_tokens: int):
        # transformers 5 renamed past_key_values to cache (argument and output field)
        cache = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        tokens, rows = [], []
        out = self.model(torch.tensor([list(prompt_ids)]), use_cache=True)
        for step in range(max_tokens):
            row = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            tokens.append(int(row.argmax()))
            rows.append(row)
            if step + 1 < max_tokens:
                out = self.model(torch.tensor([[tokens[-1]]]), use_cache=True, **{cache: getattr(out, cache)})
        return tokens, rows

    @torch.no_grad()
    def _greedy_recomputed(self, prompt_ids: list[int], max_tokens: int):
        ids, rows = list(prompt_ids), []
        for _ in range(max_tokens):     # no KV cache: the plainest possible reference
            logits = self.model(torch.tensor([ids]), use_cache=False).logits
            row = torch.log_softmax(logits[0, -1].float(), dim=-1)
            tok = int(row.argmax())
            rows.append(row)
            ids.append(tok)
        return ids[len(prompt_ids):], rows


def assert_greedy_equal(ref: HFReference, prompt_ids, out_tokens, out_logprobs=None, label=""):
    """Our greedy tokens equal HF's, except at a near-tie (HF's top two within 1e-3), where the
    sequences may part; logprobs (when given) within 1e-3 of HF's log-softmax up to that point."""
    hf_tokens, rows = ref.greedy(list(prompt_ids), len(out_tokens))
    for t, (ours, theirs) in enumerate(zip(out_tokens, hf_tokens)):
        row = rows[t]
        if out_logprobs is not None:
            lp = out_logprobs[t][ours].logprob
            assert abs(lp - float(row[ours])) < NEAR_TIE, f"{label} step {t}: logprob {lp} vs HF {float(row[ours])}"
        if ours != theirs:
            gap = float(row[theirs] - row[ours])
            assert gap < NEAR_TIE, f"{label} step {t}: token {ours} vs HF {theirs} (gap {gap:.2e})"
            return t  # diverged at a near-tie: later tokens continue different contexts
    return len(out_tokens)
