"""Issue 11's engine and API defects, each reproduced on the tiny model: bad values are one clear error
at construction, n cannot wedge the engine, and prompts are refused with nbinfer's own error."""
import json
import math
import shutil

import pytest

from nbinfer import LLM, SamplingParams
from nbinfer.engine.config import EngineConfig
from nbinfer.engine.sequence import Sequence

LONG = ("Once upon a time there was a little model that wanted to write stories. "
        "A paged KV cache stores keys and values in fixed-size blocks. ")


# -- n ----------------------------------------------------------------------------------------------

def test_an_n_the_engine_cannot_serve_is_a_value_error_naming_n(shared_llm):
    with pytest.raises(ValueError, match=r"SamplingParams.n=1000000 is more than max_num_seqs=256"):
        shared_llm.submit("The", SamplingParams(n=10**6, max_tokens=1))
    assert shared_llm.stats().num_running == 0            # answered: not wedged
    assert len(shared_llm.generate("The", SamplingParams(n=256, max_tokens=1))[0].outputs) == 256


def test_forking_and_finishing_n_samples_is_linear_in_n(llama_dir, monkeypatch):
    """Finishing each of n samples used to check all n siblings (n^2 / 2 looks at Sequence.finished:
    n=10,000 took 21 s). Count the looks instead of timing them."""
    looks = [0]
    state = Sequence.__dict__["finished"]

    def counted(seq):
        looks[0] += 1
        return state.fget(seq)

    n = 400
    with LLM(llama_dir, num_kv_blocks=512, max_num_seqs=n) as llm:
        monkeypatch.setattr(Sequence, "finished", property(counted))
        out = llm.generate(LONG, SamplingParams(n=n, max_tokens=2, seed=0, ignore_eos=True))[0]
        stats = llm.stats()
    assert [c.index for c in out.outputs] == list(range(n))
    assert all(len(c.token_ids) == 2 for c in out.outputs)
    assert stats.blocks_used == 0
    assert looks[0] < 20 * n, looks[0]                   # quadratic was > n * n / 2 = 80,000


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


# -- prompts -------------------------------------------------------------------------------------------

def test_an_empty_prompt_is_a_value_error_even_where_the_tokenizer_adds_bos():
    with LLM(num_kv_blocks=16) as llm:                       # the bundled model: its tokenizer adds BOS
        assert llm.tokenizer.encode("")                      # what made "" look like a prompt
        for prompt in ("", {"prompt": ""}, ["fine", ""]):
            with pytest.raises(ValueError, match="prompt is empty"):
                llm.generate(prompt, SamplingParams(max_tokens=2))
        assert llm.generate("Once", SamplingParams(max_tokens=2))[0].outputs[0].token_ids


def test_a_prompt_with_a_lone_surrogate_is_a_value_error_naming_it(shared_llm):
    with pytest.raises(ValueError, match=r"^prompt 1: prompt is not valid text: .*'\\ud800' at character 6"):
        shared_llm.generate(["fine", "Hello \ud800"], SamplingParams(max_tokens=2))
    with pytest.raises(ValueError, match="lone surrogate"):
        shared_llm.submit({"prompt": "\udfff"})
    assert shared_llm.generate("Hello", SamplingParams(max_tokens=2))[0].outputs[0].token_ids


def test_a_prompt_over_max_model_len_shows_only_nbinfers_error(tmp_path, llama_dir):
    import logging

    model = tmp_path / "m"
    shutil.copytree(llama_dir, model)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["model_max_length"] = 16                           # transformers warns past this many tokens
    cfg_path.write_text(json.dumps(cfg))
    heard = []

    class Listen(logging.Handler):                         # transformers' loggers do not propagate to root
        def emit(self, record):
            heard.append(record.getMessage())

    listen = Listen()
    logging.getLogger("transformers").addHandler(listen)
    try:
        with LLM(str(model), num_kv_blocks=16, max_model_len=32) as llm:
            with pytest.raises(ValueError, match="max_model_len - 1 = 31"):
                llm.generate(LONG, SamplingParams(max_tokens=2))
            assert llm.generate("The quick brown fox jumps", SamplingParams(max_tokens=2))[0].outputs[0].token_ids
    finally:
        logging.getLogger("transformers").removeHandler(listen)
    assert not [m for m in heard if "Token indices sequence length" in m]
