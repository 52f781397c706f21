"""A few hundred random requests with random cancels on a tight pool: nothing leaks, outputs hold."""
import random

from nbinfer import LLM, SamplingParams

WORDS = ("the quick brown fox jumps over lazy dog paged cache block batch 量子 计算 notebook kernel engine "
         "stores keys values tokens prefix radix tree").split()
SHARED = "A paged KV cache stores keys and values in fixed-size blocks. "


def make_requests(n, rng):
    reqs = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
        prompt = (SHARED if rng.random() < 0.5 else "") + body
        if rng.random() < 0.7:
            params = SamplingParams(temperature=0, max_tokens=rng.randint(1, 24), ignore_eos=True, logprobs=2)
        else:
            params = SamplingParams(temperature=0.9, top_p=0.9, seed=i, max_tokens=rng.randint(1, 24),
                                    ignore_eos=True, logprobs=2)
        reqs.append((prompt, params, rng.random() < 0.2))
    return reqs


def same_up_to_near_tie(batched, solo):
    """Equal tokens; a divergence is allowed only where the solo run had a near-tie (< 1e-3)."""
    for t, (a, b) in enumerate(zip(batched.token_ids, solo.token_ids)):
        if a != b:
            entry = solo.logprobs[t]
            return a in entry and abs(entry[a].logprob - entry[b].logprob) < 1e-3
    return len(batched.token_ids) == len(solo.token_ids)


def test_random_traffic_with_cancels(llama_dir):
    rng = random.Random(0)
    reqs = make_requests(240, rng)
    with LLM(llama_dir, num_kv_blocks=48, block_size=8, max_num_seqs=32, max_num_batched_tokens=96) as llm:
        handles = []
        for prompt, params, cancel in reqs:
            handles.append(llm.submit(prompt, params))
            if rng.random() < 0.1:       # cancel some already-submitted request at a random moment
                handles[rng.randrange(len(handles))].cancel()
        for h, (_, _, cancel) in zip(handles, reqs):
            if cancel:
                h.cancel()
        outs = [h.result() for h in handles]
        stats = llm.stats()
        assert stats.blocks_used == 0
        assert stats.blocks_free + stats.blocks_cached == stats.blocks_total
        assert stats.num_running == 0 and stats.num_waiting == 0 and not stats.requests
        assert stats.num_preempted_total > 0      # the pool really was tight

        finished = [(o, r) for o, r in zip(outs, reqs) if o.outputs[0].finish_reason != "abort"]
        aborted = len(outs) - len(finished)
        assert aborted > 20 and len(finished) > 150
        for o, (_, params, _) in finished:
            assert o.outputs[0].finish_reason == "length"
            assert len(o.outputs[0].token_ids) == params.max_tokens
        llm.reset_prefix_cache()
        assert llm.stats().blocks_free == stats.blocks_total

    with LLM(llama_dir, num_kv_blocks=256, max_num_seqs=1) as solo_llm:
        for o, (prompt, params, _) in finished:
            solo = solo_llm.generate(prompt, params)[0].outputs[0]
            assert same_up_to_near_tie(o.outputs[0], solo), (prompt, o.outputs[0].token_ids, solo.token_ids)
