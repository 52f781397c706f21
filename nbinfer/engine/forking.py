"""n > 1: after a prompt's prefill its other n - 1 samples fork from its KV (shared full blocks, a copied
partial one) and sample from the prompt's logits row, so a prompt is prefilled once whatever n is."""
from __future__ import annotations

from typing import Callable

from .scheduler import Batch, Scheduler
from .sequence import Request, Sequence


class Forker:
    def __init__(self, scheduler: Scheduler, copy_blocks: Callable, new_seq: Callable[[Request, int, list[int]], Sequence]):
        self.scheduler, self.copy_blocks, self.new_seq = scheduler, copy_blocks, new_seq

    def sampling_rows(self, batch: Batch, failed: dict[Request, Exception]) -> tuple[list[int], list[Sequence]]:
        """The sequences to sample and their logits rows: a prompt whose prefill just ended with n > 1
        forks here, its n samples sharing its row. A fork that fails fails its request alone."""
        rows, seqs = [], []
        for row, seq in enumerate(it.seq for it in batch.items if it.sample):
            try:
                family = self.fork(seq) if seq.request.params.n > 1 and not seq.request.forked else [seq]
            except Exception as e:
                failed.setdefault(seq.request, e)
                continue
            rows += [row] * len(family)
            seqs += family
        return rows, seqs

    def fork(self, parent: Sequence) -> list[Sequence]:
        req = parent.request
        req.forked = True
        children = [self.new_seq(req, index, list(parent.token_ids)) for index in range(1, req.params.n)]
        req.seqs += children
        src, dst = self.scheduler.fork(parent, children)
        if src:
            self.copy_blocks(src, dst)
        return req.seqs
