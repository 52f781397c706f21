"""Issue 11's engine and API defects, each reproduced on the tiny model: bad values are one clear error
at construction."""
import math

import pytest

from nbinfer import LLM, SamplingParams
from nbinfer.engine.config import EngineConfig

# -- every value checked at construction ----------------------------------------------------------------

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize("field, value", [
    ("temperature", NAN), ("temperature", INF), ("top_p", NAN), ("min_p", NAN), ("repetition_penalty", NAN),
    ("repetition_penalty", INF), ("presence_penalty", INF), ("frequency_penalty", -INF),
    ("stop", 123), ("stop", ["ok", 5]), ("stop_token_ids", 5), ("stop_token_ids", [True]),
    ("stop_token_ids", "12"), ("ignore_eos", "no"), ("skip_special_tokens", "false"),
    ("include_stop_str_in_output", 1), ("n", 2.0), ("n", True), ("max_tokens", True), ("max_tokens", "16"),
    ("seed", "1"), ("seed", 2**64), ("logprobs", 1.5), ("prompt_logprobs", True), ("logprob_start_len", None),
    ("top_k", 2.5), ("temperature", "0.5"), ("temperature", None), ("constraint", object()),
])
def test_every_sampling_field_is_checked_naming_it_and_the_value(field, value):
    with pytest.raises(ValueError) as info:
        SamplingParams(**{field: value})
    msg = str(info.value)
    assert msg.startswith(f"SamplingParams.{field} ") and repr(value)[:20] in msg, msg


def test_valid_values_are_normalised_not_refused():
    import numpy as np
    p = SamplingParams(temperature=1, top_k=np.int64(5), stop="x", stop_token_ids=(3, 4), n=np.int32(2))
    assert (p.temperature, p.top_k, p.stop, p.stop_token_ids, p.n) == (1.0, 5, ["x"], [3, 4], 2)
    assert type(p.top_k) is int and type(p.n) is int
    assert SamplingParams(stop=["a", "b"], seed=2**64 - 1, max_tokens=None).stop == ["a", "b"]


@pytest.mark.parametrize("option, value", [
    ("gpu_memory_utilization", "high"), ("gpu_memory_utilization", NAN), ("gpu_memory_utilization", INF),
    ("gpu_memory_utilization", 0), ("gpu_memory_utilization", 1.5), ("block_size", True), ("block_size", 16.0),
    ("max_num_seqs", "8"), ("num_kv_blocks", 0), ("max_model_len", -1), ("cpu_kv_cache_bytes", 1.5),
    ("max_num_batched_tokens", NAN), ("enable_prefix_caching", "yes"), ("enforce_eager", 1),
    ("trust_remote_code", "no"), ("seed", 1.5), ("device", "tpu"), ("device", 5), ("dtype", 5),
    ("dtype", "int3"), ("attention_backend", None), ("schedule_policy", 1), ("load_format", "pt"),
    ("revision", 5), ("model", 5), ("tensor_parallel_size", "1"),
])
def test_every_engine_option_is_checked_naming_it_and_the_value(option, value):
    with pytest.raises(ValueError) as info:
        EngineConfig(**{option: value})
    msg = str(info.value)
    assert msg.startswith(f"{option} ") and repr(value) in msg, msg


def test_llm_refuses_a_bad_option_before_loading_anything(llama_dir):
    with pytest.raises(ValueError, match="gpu_memory_utilization must be a number, got 'high'"):
        LLM(llama_dir, gpu_memory_utilization="high")
    config = EngineConfig(model=llama_dir, dtype="bf16", device="cuda:1")   # a Path, an alias: normalised
    assert (config.model, config.dtype, config.device) == (str(llama_dir), "bfloat16", "cuda:1")
