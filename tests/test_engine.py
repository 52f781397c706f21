"""Engine behaviour: prefix cache, chunked prefill, preemption, n > 1, cancel, threads, stats, shutdown."""
import threading
import time

import pytest

from hf_reference import assert_greedy_equal
from nbinfer import LLM, SamplingParams

GREEDY = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)
LONG = ("Once upon a time there was a little model that wanted to write stories. "
        "A paged KV cache stores keys and values in fixed-size blocks. ")


def check_invariants(stats):
    assert stats.blocks_free + stats.blocks_used + stats.blocks_cached == stats.blocks_total


def test_prefix_cache_hit_reuses_blocks_and_keeps_output(llama_dir, hf_ref):
    with LLM(llama_dir, num_kv_blocks=64) as llm:
        a = llm.generate(LONG + "The quick", GREEDY)[0]
        hits_before = llm.stats().prefix_hit_tokens
        b = llm.generate(LONG + "Notebooks keep", GREEDY)[0]
        stats = llm.stats()
    assert a.metrics.num_cached_tokens == 0
    assert b.metrics.num_cached_tokens >= 16 and b.metrics.num_cached_tokens % 16 == 0
    assert stats.prefix_hit_tokens - hits_before == b.metrics.num_cached_tokens
    ref = hf_ref("llama")
    for o in (a, b):
        assert assert_greedy_equal(ref, o.prompt_token_ids, o.outputs[0].token_ids) > 10


def test_identical_prompt_hits_all_but_the_last_token(llama_dir):
    with LLM(llama_dir, num_kv_blocks=64) as llm:
        first = llm.generate(LONG, GREEDY)[0]
        second = llm.generate(LONG, GREEDY)[0]
    n = len(first.prompt_token_ids)
    assert second.metrics.num_cached_tokens == (n - 1) // 16 * 16
    assert second.outputs[0].token_ids == first.outputs[0].token_ids


def test_generated_tokens_are_cached_for_the_next_turn(llama_dir):
    """Multi-turn / SGL programs send prompt + previous output: those blocks are reused too."""
    with LLM(llama_dir, num_kv_blocks=64) as llm:
        first = llm.generate(LONG, SamplingParams(temperature=0, max_tokens=40, ignore_eos=True))[0]
        follow = {"prompt_token_ids": first.prompt_token_ids + first.outputs[0].token_ids + [5, 6, 7]}
        second = llm.generate(follow, GREEDY)[0]
    assert second.metrics.num_cached_tokens > len(first.prompt_token_ids) // 16 * 16


def test_prefix_caching_off(llama_dir):
    with LLM(llama_dir, num_kv_blocks=64, enable_prefix_caching=False) as llm:
        llm.generate(LONG, GREEDY)
        b = llm.generate(LONG, GREEDY)[0]
        stats = llm.stats()
    assert b.metrics.num_cached_tokens == 0 and stats.blocks_cached == 0
    assert stats.blocks_free == stats.blocks_total


def test_chunked_prefill_matches_hf(llama_dir, hf_ref):
    prompts = [LONG * 2, "The quick brown fox", LONG + "Continuous batching"]
    with LLM(llama_dir, num_kv_blocks=64, max_num_batched_tokens=24) as llm:
        outs = llm.generate(prompts, GREEDY)
        steps = llm.stats().steps_total
    assert steps > len(LONG) * 2 // 24 // 4   # the long prompt really was split over steps
    ref = hf_ref("llama")
    for o in outs:
        assert len(o.prompt_token_ids) > 24 or o.prompt == "The quick brown fox"
        assert assert_greedy_equal(ref, o.prompt_token_ids, o.outputs[0].token_ids) > 10


def test_preemption_by_recompute_matches_hf(llama_dir, hf_ref):
    prompts = [LONG[: 40 + 13 * i] for i in range(6)]
    params = SamplingParams(temperature=0, max_tokens=40, ignore_eos=True)
    with LLM(llama_dir, num_kv_blocks=14, block_size=8, enable_prefix_caching=False) as llm:
        outs = llm.generate(prompts, params)
        stats = llm.stats()
    assert stats.num_preempted_total > 0
    check_invariants(stats)
    assert stats.blocks_used == 0
    ref = hf_ref("llama")
    for o in outs:
        assert len(o.outputs[0].token_ids) == 40
        assert assert_greedy_equal(ref, o.prompt_token_ids, o.outputs[0].token_ids) > 20


def test_preemption_with_prefix_cache_matches_solo_runs(llama_dir):
    prompts = [LONG[: 30 + 11 * i] for i in range(8)]
    params = SamplingParams(temperature=0, max_tokens=30, ignore_eos=True)
    with LLM(llama_dir, num_kv_blocks=200) as llm:
        solo = [llm.generate(p, params)[0].outputs[0].token_ids for p in prompts]
    with LLM(llama_dir, num_kv_blocks=16, block_size=8) as llm:
        outs = llm.generate(prompts, params)
        stats = llm.stats()
    assert stats.num_preempted_total > 0
    assert [o.outputs[0].token_ids for o in outs] == solo


def test_max_model_len_capped_to_pool_so_a_lone_request_always_fits(llama_dir):
    with LLM(llama_dir, num_kv_blocks=4, block_size=8) as llm:
        assert llm.max_model_len == 32
        out = llm.generate("The quick brown fox", SamplingParams(max_tokens=100, ignore_eos=True))[0]
        assert out.outputs[0].finish_reason == "length"
        assert len(out.prompt_token_ids) + len(out.outputs[0].token_ids) == 32
        with pytest.raises(ValueError, match="max_model_len"):
            llm.generate(LONG, GREEDY)


def test_an_explicit_max_model_len_the_pool_or_the_model_cannot_hold_is_an_error(llama_dir):
    with pytest.raises(ValueError, match="max_model_len=256 needs 16 KV blocks but the pool holds 4"):
        LLM(llama_dir, num_kv_blocks=4, max_model_len=256)
    with pytest.raises(ValueError, match=r"max_model_len=1000 is more than the model's max_position_embeddings \(512\)"):
        LLM(llama_dir, num_kv_blocks=4, max_model_len=1000)


def test_n_samples_share_the_prompt_kv(llama_dir):
    with LLM(llama_dir, num_kv_blocks=64) as llm:
        out = llm.generate(LONG, SamplingParams(n=4, temperature=1.0, seed=3, max_tokens=12, ignore_eos=True))[0]
        stats = llm.stats()
    assert [c.index for c in out.outputs] == [0, 1, 2, 3]
    assert len({tuple(c.token_ids) for c in out.outputs}) > 1
    # the prompt was computed once: no prefix hits needed, prompt counted once
    assert stats.prompt_tokens_total == len(out.prompt_token_ids)
    assert stats.blocks_used == 0


def test_n_greedy_samples_are_identical_and_equal_single(llama_dir):
    with LLM(llama_dir, num_kv_blocks=64) as llm:
        single = llm.generate(LONG, GREEDY)[0].outputs[0].token_ids
        llm.reset_prefix_cache()
        many = llm.generate(LONG, SamplingParams(n=3, temperature=0, max_tokens=20, ignore_eos=True))[0]
    assert all(c.token_ids == single for c in many.outputs)


def test_cancel_frees_blocks_at_once(llama_dir):
    with LLM(llama_dir, num_kv_blocks=64) as llm:
        h = llm.submit(LONG, SamplingParams(max_tokens=400, ignore_eos=True))
        for _ in h:           # wait for the first delta: it is running
            break
        assert llm.stats().blocks_used > 0
        h.cancel()
        stats = llm.stats()
        out = h.result()
    assert out.outputs[0].finish_reason == "abort"
    assert stats.blocks_used == 0 and stats.num_running == 0
    check_invariants(stats)


def test_cancel_a_waiting_request_and_n_before_fork(llama_dir):
    from nbinfer.engine.handle import cancel_all
    # n may not exceed max_num_seqs: three running requests keep the n=3 one waiting
    with LLM(llama_dir, num_kv_blocks=64, max_num_seqs=3) as llm:
        a = [llm.submit(LONG, SamplingParams(max_tokens=200, ignore_eos=True)) for _ in range(3)]
        b = llm.submit(LONG, SamplingParams(n=3, max_tokens=5))
        b.cancel()
        out_b = b.result()
        cancel_all(a)
        stats = llm.stats()
    assert [c.finish_reason for c in out_b.outputs] == ["abort"] * 3
    assert stats.blocks_used == 0


def test_handle_streams_deltas_that_add_up_to_the_text(shared_llm):
    h = shared_llm.submit("The quick brown fox", SamplingParams(max_tokens=30, seed=1, ignore_eos=True))
    deltas = list(h)
    assert "".join(deltas) == h.result().outputs[0].text
    assert len(deltas) > 1


def test_submit_is_thread_safe(shared_llm):
    prompts = [f"Prompt number {i}: The quick" for i in range(24)]
    solo = {p: shared_llm.generate(p, GREEDY)[0].outputs[0].token_ids for p in prompts[:4]}
    results, errors = {}, []

    def worker(chunk):
        try:
            for p in chunk:
                results[p] = shared_llm.submit(p, GREEDY).result().outputs[0].token_ids
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(prompts[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == len(prompts)
    for p, toks in solo.items():
        assert results[p] == toks


def test_stats_fields_and_invariants(shared_llm):
    h = shared_llm.submit(LONG, SamplingParams(max_tokens=300, ignore_eos=True), request_id="watched")
    next(iter(h))
    s = shared_llm.stats()
    req = s.requests["watched"]
    assert req.state == "running" and req.prompt_tokens > 0 and req.max_tokens == 300
    assert len(req.block_ids) >= req.prompt_tokens // s.block_size
    assert s.num_running >= 1 and s.block_size == 16
    assert s.weights_bytes > 0 and s.kv_cache_bytes > 0
    check_invariants(s)
    h.cancel()
    time.sleep(0.1)
    s = shared_llm.stats()
    assert "watched" not in s.requests
    assert s.prompt_tokens_total > 0 and s.generation_tokens_total > 0
    check_invariants(s)


@pytest.mark.parametrize("prompt, field", [
    ("", "empty"),
    ({"prompt_token_ids": []}, "empty"),
    ({"prompt_token_ids": [1, 2, 10**7]}, "prompt_token_ids"),
    ({"nothing": 1}, "prompt_token_ids"),
    (42, "prompts must be"),
    ([42], "prompt must be"),
])
def test_bad_prompts_raise_value_error_and_engine_keeps_serving(shared_llm, prompt, field):
    with pytest.raises(ValueError, match=field):
        shared_llm.generate(prompt, GREEDY)
    assert shared_llm.generate("The", SamplingParams(max_tokens=2))[0].outputs[0].token_ids


def test_prompt_over_max_model_len(llama_dir):
    with LLM(llama_dir, num_kv_blocks=64, max_model_len=32) as llm:
        with pytest.raises(ValueError, match="max_model_len"):
            llm.generate(LONG, GREEDY)
        assert llm.generate("The", SamplingParams(max_tokens=2))[0].outputs[0].token_ids


def test_params_per_prompt_must_match(shared_llm):
    with pytest.raises(ValueError, match="2 SamplingParams for 3 prompts"):
        shared_llm.generate(["a", "b", "c"], [GREEDY, GREEDY])
    outs = shared_llm.generate(["The", "A"], [SamplingParams(max_tokens=2), SamplingParams(max_tokens=3)])
    assert [len(o.outputs[0].token_ids) for o in outs] == [2, 3]


def test_shutdown_then_a_second_llm(llama_dir):
    llm = LLM(llama_dir, num_kv_blocks=16)
    llm.generate("The", SamplingParams(max_tokens=2))
    llm.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        llm.generate("The")
    llm.shutdown()  # idempotent
    with LLM(llama_dir, num_kv_blocks=16) as again:
        assert again.generate("The", SamplingParams(max_tokens=2))[0].outputs[0].token_ids


def test_unknown_engine_option_and_bad_values(llama_dir):
    with pytest.raises(TypeError, match="unknown engine option"):
        LLM(llama_dir, max_num_seq=3)
    with pytest.raises(ValueError, match="tensor_parallel_size"):
        LLM(llama_dir, tensor_parallel_size=2)
    with pytest.raises(ValueError, match="block_size"):
        LLM(llama_dir, block_size=0)
    with pytest.raises(ValueError, match="dtype"):
        LLM(llama_dir, dtype="int3")


def test_chat_uses_the_template(shared_llm):
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    out = shared_llm.chat(conv, SamplingParams(max_tokens=3))[0]
    tok = shared_llm.tokenizer
    assert out.prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert out.prompt.endswith("<|im_start|>assistant\n")
    assert out.prompt_token_ids == tok.encode(out.prompt, add_special_tokens=False)
    two = shared_llm.chat([conv, conv[1:]], SamplingParams(max_tokens=2))
    assert len(two) == 2
    with pytest.raises(ValueError, match="messages\\[0\\]"):
        shared_llm.chat([{"content": "no role"}])


def test_seed_example_runs_with_only_the_import_changed(llama_dir):
    # the seed's vLLM example, verbatim apart from the import and the model path
    from nbinfer import LLM, SamplingParams
    prompts = ["Hello, my name is", "The capital of France is"]
    sampling_params = SamplingParams(temperature=0.7, max_tokens=512)
    llm = LLM(model=str(llama_dir), tensor_parallel_size=1)
    outputs = llm.generate(prompts, sampling_params)
    for output in outputs:
        prompt = output.prompt
        generated_text = output.outputs[0].text
        assert prompt in prompts and isinstance(generated_text, str)
    llm.shutdown()


def test_stats_show_shared_blocks(llama_dir):
    with LLM(llama_dir, num_kv_blocks=64) as llm:
        a = llm.submit(LONG, SamplingParams(max_tokens=300, ignore_eos=True))
        next(iter(a))
        b = llm.submit(LONG + "more", SamplingParams(max_tokens=300, ignore_eos=True))
        next(iter(b))
        s = llm.stats()
        a.cancel(), b.cancel()
    both = set(s.requests[a.request_id].block_ids) & set(s.requests[b.request_id].block_ids)
    assert both and set(s.shared_block_ids) == both


def test_simultaneous_requests_compute_a_shared_prefix_once(llama_dir, hf_ref):
    prompts = [LONG + tail for tail in ("The quick", "Notebooks keep", "A paged", "Continuous")]
    with LLM(llama_dir, num_kv_blocks=128) as llm:
        outs = llm.generate(prompts, GREEDY)      # all four arrive in the same step
        shared_blocks = len(llm.tokenizer.encode(LONG)) // 16
    assert outs[0].metrics.num_cached_tokens == 0
    assert all(o.metrics.num_cached_tokens >= (shared_blocks - 1) * 16 for o in outs[1:])
    ref = hf_ref("llama")
    for o in outs:
        assert assert_greedy_equal(ref, o.prompt_token_ids, o.outputs[0].token_ids) > 10


def test_a_failing_step_fails_its_requests_and_the_engine_keeps_serving(llama_dir):
    with LLM(llama_dir, num_kv_blocks=32) as llm:
        runner = llm.engine.runner
        real_run = runner.run

        def broken(batch):
            runner.run = real_run
            raise RuntimeError("device fell over")

        runner.run = broken
        with pytest.raises(RuntimeError, match="device fell over"):
            llm.generate("The quick", GREEDY)
        stats = llm.stats()
        assert stats.blocks_used == 0 and not stats.requests
        assert llm.generate("The quick", GREEDY)[0].outputs[0].token_ids


def test_duplicate_request_id_is_refused_while_running(shared_llm):
    h = shared_llm.submit("The quick", SamplingParams(max_tokens=200, ignore_eos=True), request_id="dup")
    with pytest.raises(ValueError, match="request_id 'dup' is already in use"):
        shared_llm.submit("The quick", GREEDY, request_id="dup")
    h.cancel()
    assert shared_llm.submit("The", SamplingParams(max_tokens=2), request_id="dup").result().outputs[0].token_ids


def test_shutdown_fails_queued_and_running_requests_instead_of_hanging(llama_dir):
    llm = LLM(llama_dir, num_kv_blocks=32, max_num_seqs=1)
    handles = [llm.submit(LONG, SamplingParams(max_tokens=300, ignore_eos=True)) for _ in range(5)]
    llm.shutdown()
    for h in handles:
        with pytest.raises(RuntimeError, match="shut down"):
            h.result(timeout=10)


def test_default_sampling_params_come_from_generation_config(tmp_path, llama_dir):
    import json
    import shutil
    model = tmp_path / "m"
    shutil.copytree(llama_dir, model)
    cfg = json.loads((model / "generation_config.json").read_text())
    cfg.update(temperature=0.6, top_p=0.9, top_k=0, repetition_penalty=1.1)
    (model / "generation_config.json").write_text(json.dumps(cfg))
    with LLM(str(model), num_kv_blocks=16) as llm:
        p = llm.get_default_sampling_params()
    assert (p.temperature, p.top_p, p.top_k, p.repetition_penalty) == (0.6, 0.9, -1, 1.1)


def test_any_64_bit_seed_works_with_n_and_a_bigger_one_is_a_value_error(shared_llm):
    top = SamplingParams(temperature=1.0, seed=2**64 - 1, n=2, max_tokens=3)
    assert [len(c.token_ids) for c in shared_llm.generate("The", top)[0].outputs] == [3, 3]
    with pytest.raises(ValueError, match="seed"):
        SamplingParams(seed=2**64)


def test_logprobs_beyond_the_vocabulary_are_refused_at_submit(shared_llm):
    vocab = shared_llm.engine.model_config.vocab_size
    for field in ("logprobs", "prompt_logprobs"):
        with pytest.raises(ValueError, match=field):
            shared_llm.submit("The", SamplingParams(max_tokens=2, **{field: vocab + 1}))
    assert shared_llm.generate("The", SamplingParams(max_tokens=2))[0].outputs[0].token_ids


def test_a_request_the_engine_cannot_take_fails_alone(llama_dir):
    with LLM(llama_dir, num_kv_blocks=32) as llm:
        engine, real = llm.engine, llm.engine._new_seq

        def refuse(req, index, ids):
            if req.request_id == "bad":
                raise RuntimeError("no generator for you")
            return real(req, index, ids)

        engine._new_seq = refuse
        good = llm.submit("The quick", SamplingParams(max_tokens=30, ignore_eos=True))
        bad = llm.submit("The quick", GREEDY, request_id="bad")
        with pytest.raises(RuntimeError, match="no generator"):
            bad.result(timeout=30)
        assert len(good.result(timeout=30).outputs[0].token_ids) == 30
        engine._new_seq = real
        assert llm.submit("The", SamplingParams(max_tokens=2), request_id="bad").result(timeout=30)


def test_cancel_all_aborts_many_requests_in_one_step(llama_dir):
    from nbinfer.engine.handle import cancel_all
    with LLM(llama_dir, num_kv_blocks=128, max_num_seqs=4) as llm:
        handles = [llm.submit(LONG, SamplingParams(max_tokens=300, ignore_eos=True)) for _ in range(12)]
        next(iter(handles[0]))                   # running
        steps = llm.stats().steps_total
        cancel_all(handles)
        stats = llm.stats()
    assert all(h.result().outputs[0].finish_reason == "abort" for h in handles)
    assert stats.blocks_used == 0 and stats.num_running == stats.num_waiting == 0
    assert stats.steps_total - steps <= 2         # not one step per handle


def test_a_late_cancel_does_not_abort_a_newer_request_with_the_same_id(shared_llm):
    old = shared_llm.submit("The", SamplingParams(max_tokens=2), request_id="same")
    old.result()
    new = shared_llm.submit(LONG, SamplingParams(max_tokens=40, ignore_eos=True), request_id="same")
    shared_llm.engine._cancel([old])             # what a cancel racing old's completion delivers
    assert new.result().outputs[0].finish_reason == "length"


def test_reset_prefix_cache_keeps_the_snapshot_consistent_under_concurrent_stats(llama_dir):
    with LLM(llama_dir, num_kv_blocks=256) as llm:
        stop, errors = threading.Event(), []

        def watch():
            while not stop.is_set():
                try:
                    check_invariants(llm.stats())
                except Exception as e:          # noqa: BLE001 -- what the test looks for
                    errors.append(e)

        watcher = threading.Thread(target=watch)
        watcher.start()
        for i in range(20):
            llm.generate([f"{i} {LONG}", f"{LONG} {i}"], SamplingParams(max_tokens=4))
            llm.reset_prefix_cache()
        stop.set()
        watcher.join()
        assert llm.stats().blocks_cached == 0
    assert not errors


def test_stats_after_shutdown_and_concurrent_shutdowns(llama_dir):
    llm = LLM(llama_dir, num_kv_blocks=16)
    engine = llm.engine
    threads = [threading.Thread(target=engine.shutdown) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with pytest.raises(RuntimeError, match="shut down"):
        engine.stats()
    with pytest.raises(RuntimeError, match="shut down"):
        engine.submit("The")
