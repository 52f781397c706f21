"""Issue 11's engine and API defects, each reproduced on the tiny model: bad values are one clear error
at construction, a request's own failure fails it alone, n cannot wedge the engine, and a dead engine
says so instead of leaving its callers waiting forever."""
import json
import math
import shutil

import threading

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


# -- a request's own failure fails it alone -----------------------------------------------------------

class Boom(Exception):
    pass


class Constraint:
    """A constraint object (as nbinfer.lang builds them) that raises in one of its methods."""

    def __init__(self, where):
        self.where = where

    def new_state(self):
        return self

    def allowed_mask(self, vocab_size):
        if self.where == "allowed_mask":
            raise Boom("allowed_mask fell over")
        return None

    def accept(self, token):
        if self.where == "accept":
            raise Boom("accept fell over")

    def is_finished(self):
        return False


@pytest.mark.parametrize("where", ["allowed_mask", "accept", "detokenizer"])
def test_a_failure_that_belongs_to_one_request_fails_it_alone(llama_dir, where):
    with LLM(llama_dir, num_kv_blocks=64) as llm:
        if where == "detokenizer":
            processor, real = llm.engine.outputs, llm.engine.outputs.detokenizer

            def detokenizer(req):
                detok = real(req)
                if req.request_id == "bad":
                    detok.push = lambda token: (_ for _ in ()).throw(Boom("detokenizer fell over"))
                return detok

            processor.detokenizer = detokenizer
            bad_params = SamplingParams(max_tokens=20, ignore_eos=True)
        else:
            bad_params = SamplingParams(max_tokens=20, ignore_eos=True, constraint=Constraint(where))
        good = [llm.submit(f"{i} {LONG}", SamplingParams(max_tokens=20, ignore_eos=True, n=1 + i % 2))
                for i in range(4)]
        bad = llm.submit("The quick", bad_params, request_id="bad")
        with pytest.raises(Boom, match="fell over"):
            bad.result(timeout=60)
        for h in good:
            assert all(len(c.token_ids) == 20 for c in h.result(timeout=60).outputs)
        stats = llm.stats()
        assert stats.blocks_used == 0 and not stats.requests
        assert llm.generate("The", SamplingParams(max_tokens=2))[0].outputs[0].token_ids


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


# -- a dead engine -----------------------------------------------------------------------------------

def kill_the_engine_thread(llm, error: BaseException, when: threading.Event | None = None):
    """The next step raises something that is not an Exception (as a device fault or sys.exit would);
    with `when`, it first waits for that event (so a test can queue its requests before the death)."""
    runner = llm.engine.runner
    real = runner.run

    def dying(batch):
        runner.run = real
        if when is not None:
            when.wait(30)
        raise error

    runner.run = dying


def test_a_dead_engine_fails_its_handles_refuses_work_and_shuts_down(llama_dir):
    llm = LLM(llama_dir, num_kv_blocks=32, max_num_seqs=2)
    submitted = threading.Event()
    kill_the_engine_thread(llm, SystemExit("device lost"), when=submitted)
    handles = [llm.submit(LONG, SamplingParams(max_tokens=50, ignore_eos=True)) for _ in range(4)]
    submitted.set()
    for h in handles:                                         # running and waiting ones alike
        with pytest.raises(RuntimeError, match="the engine stopped: SystemExit: device lost; load the model again"):
            h.result(timeout=30)
    with pytest.raises(RuntimeError, match="the engine stopped: SystemExit: device lost"):
        llm.submit("The", SamplingParams(max_tokens=2))
    with pytest.raises(RuntimeError, match="the engine stopped"):
        llm.engine.call(lambda: 1, timeout=5)
    stats = llm.stats()
    assert not stats.alive and "device lost" in stats.engine_error
    assert stats.num_running == stats.num_waiting == 0 and not stats.requests
    llm.shutdown()                                           # frees weights and KV of a dead engine
    with LLM(llama_dir, num_kv_blocks=32) as again:
        assert again.stats().alive and again.stats().engine_error is None
        assert again.generate("The", SamplingParams(max_tokens=2))[0].outputs[0].token_ids


def test_nbinfer_status_says_the_engine_is_dead_and_load_works_after(llama_dir, capsys):
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell

    from nbinfer.jupyter import session
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbinfer")
    try:
        shell.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 32")
        llm = session.current_llm()
        kill_the_engine_thread(llm, SystemExit("device lost"))
        with pytest.raises(RuntimeError, match="the engine stopped"):
            llm.submit("The", SamplingParams(max_tokens=2)).result(timeout=30)
        capsys.readouterr()
        shell.run_line_magic("nbinfer", "status")
        out = capsys.readouterr().out
        assert "DEAD: the engine stopped: SystemExit: device lost; load the model again" in out
        shell.run_line_magic("nbinfer", f"load {llama_dir} --num-kv-blocks 32")
        fresh = session.current_llm()
        assert fresh is not llm and fresh.stats().alive
        capsys.readouterr()
        shell.run_line_magic("nbinfer", "status")
        assert "DEAD" not in capsys.readouterr().out
    finally:
        session.unload_llm()
