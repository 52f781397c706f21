"""Request and sequence state, owned by the engine thread.

A Request is what submit() made: one prompt, one SamplingParams, n sequences. A Sequence is one token
stream with its KV blocks. Prefill and decode are the same thing here: a step computes the tokens in
token_ids[num_computed:] (all of them, or a chunk), and samples when it reaches the end.
"""
from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass, field

import torch

from .outputs import RequestMetrics, TokenLogprobs
from .sampling_params import SamplingParams
from .sink import RequestSink


class SeqState(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


_seq_ids = itertools.count()


class Sequence:
    def __init__(self, request: "Request", index: int, token_ids: list[int]):
        self.seq_id = next(_seq_ids)
        self.request = request
        self.index = index                      # which of the request's n outputs
        self.token_ids = token_ids              # prompt + generated
        self.num_prompt_tokens = len(request.prompt_token_ids)
        self.num_computed = 0                   # tokens whose KV is in the cache
        self.blocks: list[int] = []
        self.num_published = 0                  # leading full blocks already in the prefix cache
        self.cache_hint = None                  # radix node of the last published block
        self.state = SeqState.WAITING
        self.finish_reason: str | None = None
        self.stop_reason: int | str | None = None
        self.logprobs: list[TokenLogprobs] | None = [] if request.params.logprobs is not None else None
        self.cumulative_logprob = 0.0
        self.generator: torch.Generator | None = None
        self.text = ""                          # detokenized output, stop strings cut
        self.sent = 0                           # chars of text already streamed
        self.detok = None                       # IncrementalDetokenizer, set by the engine
        constraint = request.params.constraint
        self.constraint = constraint.new_state() if constraint is not None else None

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def output_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_output(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def finished(self) -> bool:
        return self.state is SeqState.FINISHED

    def mark_finished(self) -> None:
        if self.state is not SeqState.FINISHED:
            self.state = SeqState.FINISHED
            self.request.num_finished += 1

    def __repr__(self) -> str:
        return (f"Sequence(id={self.seq_id}, req={self.request.request_id}, tokens={self.num_tokens}, "
                f"computed={self.num_computed}, blocks={len(self.blocks)}, {self.state.value})")


@dataclass(eq=False)
class Request:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    max_tokens: int                             # resolved: never past max_model_len
    arrival_time: float
    program_id: str | None = None               # SGL program that sent it (scheduling hint)
    origin: str = "api"                         # who sent it ("api", "server", ...): the dashboard's tag
    seqs: list[Sequence] = field(default_factory=list)
    prompt_logprobs: list | None = None
    prompt_logprobs_done: int = 0               # prompt positions whose logprobs are collected
    forked: bool = False                        # n > 1: children created after the prompt's prefill
    num_finished: int = 0                       # of seqs (a count, so checking a request is O(1))
    metrics: RequestMetrics = None
    sink: RequestSink | None = None             # where the engine writes its events (a RequestHandle)

    def __post_init__(self):
        self.metrics = RequestMetrics(arrival_time=self.arrival_time)
        if self.params.prompt_logprobs is not None:
            self.prompt_logprobs = [None] * len(self.prompt_token_ids)
            # positions < logprob_start_len keep None; position 0 has no logprob anyway
            self.prompt_logprobs_done = max(1, self.params.logprob_start_len)

    @property
    def needs_prompt_logprobs(self) -> bool:
        return self.prompt_logprobs is not None and self.prompt_logprobs_done < len(self.prompt_token_ids)

    @property
    def finished(self) -> bool:
        return 0 < len(self.seqs) == self.num_finished and (self.forked or self.params.n == 1)
