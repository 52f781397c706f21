"""Paged decode and extend attention kernels, and the TritonAttention backend, against torch references."""
import pytest
import torch

from kcheck import assert_close, poisoned, randn
from nbinfer.engine.attention import AttentionMetadata
from nbinfer.engine.attention.torch_backend import TorchAttention
from nbinfer.engine.attention.triton_backend import TritonAttention
from nbinfer.kernels.decode_attention import num_kv_splits, paged_decode_attention, paged_decode_attention_ref
from nbinfer.kernels.extend_attention import paged_extend_attention, paged_extend_attention_ref
from paged import random_paged_state

# the interpreter computes bf16 dots on raw bits (and truncates casts): bf16 attention is GPU-only
DTYPES = [torch.float32, torch.float16,
          pytest.param(torch.bfloat16, marks=pytest.mark.gpu)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hq,hkv,dim,page,seq_lens,splits,block_n", [
    (2, 2, 16, 4, [1, 5, 17], 1, 16),            # MHA, ragged, lengths not multiples of the page
    (4, 2, 64, 16, [33, 7], 3, 16),              # GQA group 2, split-KV
    (8, 1, 128, 8, [70, 1, 20], 4, 16),          # MQA, head_dim 128, several tiles per split
    (8, 2, 32, 16, [16, 32, 48], 2, 32),         # group 4, lengths exactly on page boundaries
    (4, 4, 64, 4, [3], 4, 16),                   # more splits than tiles: empty splits merge as nothing
    (6, 3, 16, 16, [9, 40, 2, 25], 2, None),     # default tile size
])
def test_decode_matches_reference(hq, hkv, dim, page, seq_lens, splits, block_n, dtype, device, rng):
    st = random_paged_state(seq_lens, page, hkv, dim, dtype, device, rng)
    q = randn((len(seq_lens), hq, dim), dtype, device, rng)
    out = poisoned(q.shape, dtype, device)
    scale = dim ** -0.5
    got = paged_decode_attention(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, scale,
                                 out=out, num_splits=splits, block_n=block_n)
    assert got.data_ptr() == out.data_ptr()
    ref = paged_decode_attention_ref(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, scale)
    assert_close(got, ref, dtype, f"decode splits={splits}")


def test_decode_split_choice():
    assert num_kv_splits(batch=64, num_kv_heads=32, max_seq_len=2048, num_sms=132) == 1     # grid already full
    assert num_kv_splits(batch=1, num_kv_heads=8, max_seq_len=8192, num_sms=132) == 32      # long, tiny batch
    assert num_kv_splits(batch=1, num_kv_heads=8, max_seq_len=300, num_sms=132) == 2        # short contexts
    assert num_kv_splits(batch=4, num_kv_heads=8, max_seq_len=1, num_sms=132) == 1


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("hq,hkv,dim,page,chunks,first_seq,blocks", [
    (2, 2, 16, 4, [(0, 5)], 0, (16, 16)),                         # fresh prefill, one sequence
    (4, 2, 32, 4, [(7, 3), (0, 9), (16, 1), (5, 20)], 0, (16, 16)),  # cached prefixes, ragged chunks
    (8, 1, 64, 16, [(0, 1), (3, 1), (18, 40), (0, 33)], 2, (16, 16)),  # MQA, skip 2 leading decodes
    (4, 4, 128, 8, [(11, 17)], 0, (16, 32)),                      # head_dim 128
    (6, 2, 16, 16, [(30, 4), (0, 70)], 0, (None, None)),          # default tiles
])
def test_extend_matches_reference(hq, hkv, dim, page, chunks, first_seq, blocks, dtype, device, rng):
    seq_lens = [p + n for p, n in chunks]
    st = random_paged_state(seq_lens, page, hkv, dim, dtype, device, rng)
    qsl = torch.tensor([0] + [n for _, n in chunks], dtype=torch.int32).cumsum(0).to(torch.int32).to(device)
    total = int(qsl[-1])
    q = randn((total, hq, dim), dtype, device, rng)
    out = poisoned(q.shape, dtype, device)
    scale = dim ** -0.5
    max_q = max(n for _, n in chunks[first_seq:])
    paged_extend_attention(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, qsl, scale, max_q,
                           out=out, first_seq=first_seq, block_m=blocks[0], block_n=blocks[1])
    ref = paged_extend_attention_ref(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, qsl, scale,
                                     first_seq=first_seq)
    start = int(qsl[first_seq])
    assert torch.isnan(out[:start]).all(), "rows of skipped sequences must not be written"
    assert_close(out[start:], ref[start:], dtype, "extend")


def _metadata(chunks, tables, page, device):
    """AttentionMetadata the way ModelRunner builds it: chunk i = (tokens cached before, new tokens)."""
    query_lens = [n for _, n in chunks]
    seq_lens = [p + n for p, n in chunks]
    slots = []
    for (p, n), row in zip(chunks, tables.tolist()):
        slots += [row[t // page] * page + t % page for t in range(p, p + n)]
    num_decodes = 0
    while num_decodes < len(query_lens) and query_lens[num_decodes] == 1:
        num_decodes += 1
    qsl = torch.tensor([0] + query_lens).cumsum(0).to(torch.int32)
    return AttentionMetadata(
        slot_mapping=torch.tensor(slots, device=device), query_start_loc=qsl.to(device),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32, device=device), block_tables=tables.to(device),
        num_decodes=num_decodes, max_query_len=max(query_lens), max_seq_len=max(seq_lens),
        query_lens_cpu=query_lens, seq_lens_cpu=seq_lens)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("hq,hkv,dim,page,chunks", [
    (4, 2, 16, 4, [(6, 1), (12, 1), (0, 1), (0, 7), (9, 5)]),   # decodes, a 1-token prompt, fresh + cached prefill
    (2, 1, 32, 16, [(40, 1), (17, 1)]),                         # decode only
    (4, 4, 16, 8, [(0, 21)]),                                   # prefill only
])
def test_backend_matches_torch_backend(hq, hkv, dim, page, chunks, dtype, device, rng):
    """The whole forward: K/V written through the slot mapping, decodes and prefills in one step."""
    seq_lens = [p + n for p, n in chunks]
    st = random_paged_state(seq_lens, page, hkv, dim, dtype, device, rng)
    for (p, n), row in zip(chunks, st.block_tables.tolist()):      # new tokens' slots start unwritten
        for t in range(p, p + n):
            st.k_cache[row[t // page], t % page] = float("nan")
            st.v_cache[row[t // page], t % page] = float("nan")
    meta = _metadata(chunks, st.block_tables.cpu(), page, device)
    total = sum(n for _, n in chunks)
    qkv = randn((total, (hq + 2 * hkv) * dim), dtype, device, rng)
    q = qkv[:, :hq * dim].view(total, hq, dim).contiguous()
    k = qkv[:, hq * dim:(hq + hkv) * dim].view(total, hkv, dim)
    v = qkv[:, (hq + hkv) * dim:].view(total, hkv, dim)
    # the torch backend multiplies masked-out V rows by zero, so it gets finite garbage, not NaN
    caches = [torch.where(c.isnan(), randn(c.shape, dtype, device, rng, 100.0), c) for c in (st.k_cache, st.v_cache)]
    expect_written = ~st.k_cache.isnan()
    expect_written.view(-1, hkv, dim)[meta.slot_mapping] = True
    got = TritonAttention().forward(q, k, v, st.k_cache, st.v_cache, meta, dim ** -0.5)
    ref = TorchAttention().forward(q, k, v.contiguous(), *caches, meta, dim ** -0.5)
    assert_close(got, ref, dtype, "backend output")
    for mine, theirs in zip((st.k_cache, st.v_cache), caches):
        assert torch.equal(~mine.isnan(), expect_written), "K/V written outside the step's slots"
        assert torch.equal(mine[expect_written], theirs[expect_written])


def _random_shape(gen):
    pick = lambda xs: xs[int(torch.randint(len(xs), (1,), generator=gen))]
    hkv = pick([1, 2, 3])
    group = pick([1, 2, 4, 8])
    return hkv * group, hkv, pick([16, 32, 64, 96, 128]), pick([1, 4, 12, 16])


@pytest.mark.parametrize("trial", range(6))
def test_decode_random_shapes(trial, device, rng):
    """Shapes drawn fresh each run (the seed is printed): heads, head_dim (96 is not a power of 2),
    page size (1 and 12 included), lengths, splits."""
    hq, hkv, dim, page = _random_shape(rng)
    lens = torch.randint(1, 90, (int(torch.randint(1, 5, (1,), generator=rng)),), generator=rng).tolist()
    splits = int(torch.randint(1, 6, (1,), generator=rng))
    print(f"hq={hq} hkv={hkv} dim={dim} page={page} lens={lens} splits={splits}")
    st = random_paged_state(lens, page, hkv, dim, torch.float32, device, rng)
    q = randn((len(lens), hq, dim), torch.float32, device, rng)
    out = paged_decode_attention(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, 0.3,
                                 out=poisoned(q.shape, torch.float32, device), num_splits=splits, block_n=16)
    ref = paged_decode_attention_ref(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, 0.3)
    assert_close(out, ref, torch.float32, "decode")


@pytest.mark.parametrize("trial", range(6))
def test_extend_random_shapes(trial, device, rng):
    hq, hkv, dim, page = _random_shape(rng)
    n = int(torch.randint(1, 4, (1,), generator=rng))
    chunks = [(int(torch.randint(0, 40, (1,), generator=rng)), int(torch.randint(1, 40, (1,), generator=rng)))
              for _ in range(n)]
    print(f"hq={hq} hkv={hkv} dim={dim} page={page} chunks={chunks}")
    seq_lens = [p + m for p, m in chunks]
    st = random_paged_state(seq_lens, page, hkv, dim, torch.float32, device, rng)
    qsl = torch.tensor([0] + [m for _, m in chunks]).cumsum(0).to(torch.int32).to(device)
    q = randn((int(qsl[-1]), hq, dim), torch.float32, device, rng)
    out = paged_extend_attention(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, qsl, 0.3,
                                 max(m for _, m in chunks), out=poisoned(q.shape, torch.float32, device),
                                 block_m=16, block_n=16)
    ref = paged_extend_attention_ref(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, qsl, 0.3)
    assert_close(out, ref, torch.float32, "extend")


def test_decode_mha_on_tensor_core_path(device, rng):
    """The MHA default is the broadcast path; the padded-tile path (a tuning option) is correct too."""
    st = random_paged_state([5, 40], 4, 2, 32, torch.float32, device, rng)
    q = randn((2, 2, 32), torch.float32, device, rng)
    out = paged_decode_attention(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, 0.2,
                                 out=poisoned(q.shape, torch.float32, device), num_splits=2, block_n=16, use_dot=True)
    ref = paged_decode_attention_ref(q, st.k_cache, st.v_cache, st.block_tables, st.seq_lens, 0.2)
    assert_close(out, ref, torch.float32, "decode use_dot")
