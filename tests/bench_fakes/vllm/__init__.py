"""Fake vLLM (tests only): LLM, its llm_engine stepped one token per request per step."""
import os
import time

from .sampling_params import SamplingParams  # noqa: F401

__version__ = "0.0-fake"


class _Completion:
    def __init__(self, token_ids):
        self.token_ids = token_ids


class _Output:
    def __init__(self, request_id, token_ids, finished):
        self.request_id, self.outputs, self.finished = request_id, [_Completion(token_ids)], finished


class _Engine:
    def __init__(self):
        self.live = []

    def add_request(self, request_id, prompt, params):
        internal = f"{request_id}-fake"          # vLLM suffixes ids; the runner must map them back
        self.live.append({"id": internal, "last": prompt["prompt_token_ids"][-1], "left": params.max_tokens})
        return internal

    def has_unfinished_requests(self):
        return bool(self.live)

    def step(self):
        time.sleep(0.001)
        outs = []
        for r in self.live:
            r["last"], r["left"] = (r["last"] + 1) % 1000, r["left"] - 1
            outs.append(_Output(r["id"], [r["last"]], r["left"] == 0))
        self.live = [r for r in self.live if r["left"] > 0]
        return outs


class LLM:
    def __init__(self, model, dtype, load_format, seed, max_num_seqs):
        if os.environ.get("FAKE_PEER_FAIL"):
            raise RuntimeError(f"fake vllm refuses to load {model}")
        assert os.path.isdir(model) and load_format in ("auto", "dummy") and dtype
        self.llm_engine = _Engine()

    def reset_prefix_cache(self):
        return True
