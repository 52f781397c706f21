"""Program-aware scheduling: with schedule_policy "auto" (the default), requests that carry an SGL
program id are admitted longest-cached-prefix first; plain requests keep arrival order."""
import pytest

from nbinfer.engine.block_pool import BlockPool
from nbinfer.engine.config import EngineConfig
from nbinfer.engine.sampling_params import SamplingParams
from nbinfer.engine.scheduler import Scheduler
from nbinfer.engine.sequence import Request, Sequence

BS = 4


def make_seq(rid: str, tokens: list[int], program_id: str | None) -> Sequence:
    req = Request(rid, None, list(tokens), SamplingParams(max_tokens=4), 4, 0.0, program_id=program_id)
    seq = Sequence(req, 0, list(tokens))
    req.seqs.append(seq)
    return seq


def scheduler_with_cached_prefix(policy: str) -> tuple[Scheduler, list[int]]:
    """A scheduler admitting one sequence per step, whose cache holds the blocks of `hot`."""
    cfg = EngineConfig(schedule_policy=policy, max_num_seqs=1)
    pool = BlockPool(64, BS)
    sched = Scheduler(cfg, pool, 1000)
    hot = list(range(100, 112))                       # three full blocks
    first = make_seq("warm", hot + [1], "p0")
    sched.add(first)
    sched.schedule()
    first.num_computed = first.num_tokens
    pool.insert_full_blocks(first.token_ids, first.blocks, 3, 0, None)
    sched.remove(first)                               # its blocks stay cached
    assert pool.num_cached == 3
    return sched, hot


@pytest.mark.parametrize("policy, programs, admitted_first", [
    ("auto", ("p1", "p2"), "hot"),       # SGL programs waiting: the hot prefix goes first
    ("lpm", (None, None), "hot"),
    ("auto", (None, None), "cold"),      # plain requests: arrival order
    ("fcfs", ("p1", "p2"), "cold"),
])
def test_longest_cached_prefix_first_for_programs(policy, programs, admitted_first):
    sched, hot = scheduler_with_cached_prefix(policy)
    sched.add(make_seq("cold", list(range(200, 213)), programs[0]))      # arrived first, nothing cached
    sched.add(make_seq("hot", hot + [7], programs[1]))
    batch = sched.schedule()
    assert [it.seq.request.request_id for it in batch.items] == [admitted_first]


def test_auto_is_the_default_and_keeps_a_long_queue_in_order():
    from nbinfer.engine import scheduler as sched_mod
    assert EngineConfig().schedule_policy == "auto"
    sched, hot = scheduler_with_cached_prefix("auto")
    for i in range(sched_mod.LPM_MAX_WAITING):
        sched.add(make_seq(f"cold{i}", [300 + i] * 5, "p"))
    sched.add(make_seq("hot", hot + [7], "p"))
    assert [it.seq.request.request_id for it in sched.schedule().items] == ["cold0"]
    with pytest.raises(ValueError, match="schedule_policy must be 'fcfs', 'lpm' or 'auto'"):
        EngineConfig(schedule_policy="random")
