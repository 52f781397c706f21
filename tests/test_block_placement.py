"""Block placement for the torch backend: sequences grow into adjacent blocks, and attention read
from contiguous runs (views) equals attention over gathered copies."""
import random

import numpy as np
import torch

from nbinfer.engine.attention.metadata import AttentionMetadata, consecutive_runs
from nbinfer.engine.attention.torch_backend import TorchAttention
from nbinfer.engine.block_pool import BlockPool
from nbinfer.engine.free_blocks import ContiguousFreeBlocks


def test_growth_stays_contiguous_and_new_sequences_leave_room():
    free = ContiguousFreeBlocks(100)
    a = free.take(4)
    assert a == [0, 1, 2, 3]                       # the first sequence starts the pool
    b = free.take(4)
    assert b[0] > 4 + 20                           # the next starts halfway into the gap
    assert b == list(range(b[0], b[0] + 4))
    a += free.take(3, after=a[-1])                 # growing: the blocks right after its last one
    assert a == list(range(7))
    assert len(free) == 100 - 11


def test_falls_back_to_any_free_block_when_the_neighbour_is_taken():
    free = ContiguousFreeBlocks(10)
    first = free.take(10)
    free.push([2, 7])
    assert len(free) == 2
    assert sorted(free.take(2, after=first[4])) == [2, 7]
    assert len(free) == 0


def test_pool_accounting_is_unchanged_by_placement():
    pool = BlockPool(64, 16, contiguous=True)
    blocks = pool.allocate(5)
    more = pool.allocate(2, after=blocks[-1])
    assert more == [blocks[-1] + 1, blocks[-1] + 2]
    pool.release(blocks + more)
    assert pool.num_free == 64 and pool.num_used == 0


def test_consecutive_runs():
    assert consecutive_runs([3, 4, 5, 9, 10, 2]) == [(3, 3), (9, 2), (2, 1)]
    assert consecutive_runs([7]) == [(7, 1)]


def test_decode_from_runs_equals_gathered(seed=0):
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    nb, bs, hk, hq, d = 64, 4, 2, 4, 8
    k_cache = torch.randn(nb, bs, hk, d, generator=gen)
    v_cache = torch.randn(nb, bs, hk, d, generator=gen)
    tables, lens = [], []
    order = list(range(nb))
    rng.shuffle(order)
    pieces = [list(range(10, 14)), list(range(20, 22)) + list(range(40, 43)), order[:9], [50]]
    for t in pieces:               # one run, two runs, scattered (gathered), one block
        tables.append(t)
        lens.append(len(t) * bs - rng.randrange(bs))
    q = torch.randn(len(tables), hq, d, generator=gen)
    width = max(map(len, tables))
    bt = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32)

    def meta(with_lists):
        return AttentionMetadata(slot_mapping=None, query_start_loc=None, seq_lens=torch.tensor(lens),
                                 block_tables=bt, num_decodes=len(tables), max_query_len=1, max_seq_len=max(lens),
                                 query_lens_cpu=[1] * len(tables), seq_lens_cpu=lens,
                                 block_tables_cpu=tables if with_lists else None)

    def decode(m):
        out = torch.empty_like(q)
        TorchAttention().decode(q, k_cache, v_cache, m, d ** -0.5, out)
        return out

    views, gathered = decode(meta(True)), decode(meta(False))
    torch.testing.assert_close(views, gathered)
    # and both equal plain softmax attention over each context
    for i, (t, n) in enumerate(zip(tables, lens)):
        k = k_cache[t].flatten(0, 1)[:n].repeat_interleave(hq // hk, dim=1)
        v = v_cache[t].flatten(0, 1)[:n].repeat_interleave(hq // hk, dim=1)
        w = torch.einsum("hd,nhd->hn", q[i], k) * d ** -0.5
        ref = torch.einsum("hn,nhd->hd", w.softmax(-1), v)
        torch.testing.assert_close(views[i], ref)
    assert np.isfinite(views.numpy()).all()


def test_radix_eviction_heap_stays_bounded_when_one_prefix_is_reused_many_times():
    pool = BlockPool(64, 4)
    tokens = list(range(12))                     # three full blocks
    for _ in range(1000):
        matched = pool.match_prefix(tokens, len(tokens))
        blocks = matched + (pool.allocate(3 - len(matched)) or [])
        pool.insert_full_blocks(tokens, blocks, 3, len(matched), None)
        pool.release(blocks)
    assert len(pool.cache._heap) <= 2 * len(pool.cache._by_block) + 64
    assert pool.num_cached == 3 and pool.num_used == 0
