"""The CPU backend (head-major, K-transposed cache) against the torch reference backend (NHD cache):
same step, same numbers, same cache contents once the layouts are lined up."""
import random

import pytest
import torch

from nbinfer.engine.attention import AttentionMetadata, make_backend
from nbinfer.engine.attention.cpu_backend import CpuAttention
from nbinfer.engine.attention.metadata import MAX_RUNS
from nbinfer.engine.attention.torch_backend import TorchAttention
from nbinfer.kernels import cpu_build, cpu_decode


def to_cpu_layout(k_nhd: torch.Tensor, v_nhd: torch.Tensor):
    """[nb, bs, Hk, D] x2 -> K [Hk, D, S], V [Hk, S, D] in one cache of CpuAttention's shape."""
    nb, bs, hk, d = k_nhd.shape
    kv = torch.empty(CpuAttention.cache_shape(1, nb, bs, hk, d), dtype=k_nhd.dtype)
    k, v = CpuAttention.layer_kv(kv, 0)
    k.copy_(k_nhd.permute(2, 3, 0, 1).reshape(hk, d, nb * bs))
    v.copy_(v_nhd.permute(2, 0, 1, 3).reshape(hk, nb * bs, d))
    return kv, k, v


def make_step(chunks, tables, bs):
    """chunks: (cached, new) tokens per sequence, decodes first."""
    query_lens = [n for _, n in chunks]
    seq_lens = [c + n for c, n in chunks]
    slots = [tables[i][t // bs] * bs + t % bs for i, (c, n) in enumerate(chunks) for t in range(c, c + n)]
    width = max(map(len, tables))
    nd = 0
    while nd < len(chunks) and query_lens[nd] == 1:
        nd += 1
    return AttentionMetadata(
        slot_mapping=torch.tensor(slots), query_start_loc=torch.tensor([0] + query_lens).cumsum(0).int(),
        seq_lens=torch.tensor(seq_lens, dtype=torch.int32),
        block_tables=torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32),
        num_decodes=nd, max_query_len=max(query_lens), max_seq_len=max(seq_lens),
        query_lens_cpu=query_lens, seq_lens_cpu=seq_lens, block_tables_cpu=tables)


@pytest.fixture(scope="module")
def kernel():
    lib = cpu_decode.load()
    if lib is None:
        pytest.skip("the CPU decode kernel could not be built here (no C++ compiler?)")
    return lib


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "torch-loop"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("hq,hk,d,bs", [(8, 4, 16, 4), (4, 4, 32, 16), (6, 1, 16, 4), (16, 2, 64, 32)])
def test_forward_matches_torch_backend(hq, hk, d, bs, dtype, use_kernel, request, seed=0):
    if use_kernel:
        request.getfixturevalue("kernel")
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    nb = 96
    # decodes: one run, two runs, scattered (more runs than MAX_RUNS: gathered); then a fresh
    # prefill, a prefill chunk after a cached prefix, and a one-token prompt
    chunks = [(3 * bs + 1, 1), (5 * bs, 1), (7 * bs + 2, 1), (0, 9), (2 * bs + 3, 6), (0, 1)]
    free = list(range(1, nb))
    rng.shuffle(free)
    tables = [list(range(10, 14)), list(range(20, 23)) + list(range(40, 43))]    # one run, two runs
    free = [b for b in free if b not in tables[0] + tables[1]]
    for c, n in chunks[2:]:
        need = -(-(c + n) // bs)
        tables.append([free.pop() for _ in range(need)])
    assert len(AttentionMetadata.block_runs(make_step(chunks, tables, bs), 2, bs)) > MAX_RUNS

    k_nhd = torch.randn(nb, bs, hk, d, generator=gen).to(dtype)
    v_nhd = torch.randn(nb, bs, hk, d, generator=gen).to(dtype)
    kv, k_cpu, v_cpu = to_cpu_layout(k_nhd, v_nhd)
    total = sum(n for _, n in chunks)
    q = torch.randn(total, hq, d, generator=gen).to(dtype)
    k = torch.randn(total, hk, d, generator=gen).to(dtype)
    v = torch.randn(total, hk, d, generator=gen).to(dtype)

    ref = TorchAttention().forward(q, k, v, k_nhd, v_nhd, make_step(chunks, tables, bs), d ** -0.5)
    backend = CpuAttention(bs, use_kernel=use_kernel)
    assert (backend.kernel is not None) == use_kernel
    got = backend.forward(q, k, v, k_cpu, v_cpu, make_step(chunks, tables, bs), d ** -0.5)
    # bf16: the kernel reads the bf16 cache and sums in fp32; the reference rounds its products to bf16
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else {}
    torch.testing.assert_close(got, ref, **tol)
    # the new tokens landed in the same slots: the whole caches agree after the step
    _, k_ref, v_ref = to_cpu_layout(k_nhd, v_nhd)
    assert torch.equal(k_cpu, k_ref) and torch.equal(v_cpu, v_ref)


def test_decode_without_host_tables_gathers():
    """Without the block tables as lists (no runs known), every context is gathered."""
    gen = torch.Generator().manual_seed(1)
    nb, bs, hk, hq, d = 32, 4, 2, 4, 8
    k_nhd, v_nhd = torch.randn(nb, bs, hk, d, generator=gen), torch.randn(nb, bs, hk, d, generator=gen)
    _, k_cpu, v_cpu = to_cpu_layout(k_nhd, v_nhd)
    tables = [[5, 6, 7], [20, 3]]
    chunks = [(9, 1), (6, 1)]
    q, k, v = (torch.randn(2, h, d, generator=gen) for h in (hq, hk, hk))
    ref = TorchAttention().forward(q, k, v, k_nhd, v_nhd, make_step(chunks, tables, bs), d ** -0.5)
    meta = make_step(chunks, tables, bs)
    meta.block_tables_cpu = None
    backend = CpuAttention(bs, use_kernel=False)
    torch.testing.assert_close(backend.forward(q, k, v, k_cpu, v_cpu, meta, d ** -0.5), ref)


def test_copy_blocks_copies_every_layer_k_and_v():
    layers, nb, bs, hk, d = 3, 10, 4, 2, 8
    backend = CpuAttention(bs)
    kv = torch.randn(backend.cache_shape(layers, nb, bs, hk, d))
    before = kv.clone()
    backend.copy_blocks(kv, torch.tensor([2, 5]), torch.tensor([7, 1]))
    for layer in range(layers):
        k, v = backend.layer_kv(kv, layer)
        k0, v0 = backend.layer_kv(before, layer)
        for s, t in ((2, 7), (5, 1)):
            assert torch.equal(k[:, :, t * bs:(t + 1) * bs], k0[:, :, s * bs:(s + 1) * bs])
            assert torch.equal(v[:, t * bs:(t + 1) * bs], v0[:, s * bs:(s + 1) * bs])
        untouched = [b for b in range(nb) if b not in (7, 1)]
        for b in untouched:
            assert torch.equal(v[:, b * bs:(b + 1) * bs], v0[:, b * bs:(b + 1) * bs])


def test_auto_picks_cpu_backend_on_cpu():
    assert make_backend("auto", torch.device("cpu"), 16).name == "cpu"
    assert make_backend("torch", torch.device("cpu"), 16).name == "torch"
    with pytest.raises(ValueError, match="needs the CPU"):
        make_backend("cpu", torch.device("cuda"), 16)


def test_engine_on_cpu_backend_equals_torch_backend(llama_dir):
    """End to end: chunked prefill, prefix-cache hits, forks (n=2 copies the parent's last block)
    and preemption (a pool too small for all at once) give the same tokens and logprobs."""
    from nbinfer import LLM, SamplingParams

    shared = "A paged KV cache stores keys and values in fixed-size blocks."
    prompts = ["The quick brown fox", shared + " Continuous batching", shared + " Once upon a time"]
    params = [SamplingParams(temperature=0, max_tokens=12, ignore_eos=True, logprobs=2),
              SamplingParams(temperature=0.8, seed=3, n=2, max_tokens=12, ignore_eos=True)]
    results = {}
    for backend in ("torch", "cpu"):
        with LLM(llama_dir, attention_backend=backend, block_size=4, num_kv_blocks=16,
                 max_num_batched_tokens=16) as llm:
            assert llm.engine.runner.backend.name == backend
            outs = llm.generate(prompts, params[0]) + llm.generate(prompts, params[1])
            results[backend] = [([c.token_ids for c in o.outputs],
                                 [round(lp[t].logprob, 4) for c in o.outputs if c.logprobs
                                  for lp, t in zip(c.logprobs, c.token_ids)]) for o in outs]
            stats = llm.stats()
            assert stats.prefix_hit_tokens > 0 and stats.num_preempted_total > 0
    assert results["cpu"] == results["torch"]


def test_kernel_builds_into_the_cache_dir_once(tmp_path, monkeypatch):
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cpu_build, "_loaded", {})
    if cpu_build._compiler() is None:
        pytest.skip("no C++ compiler here")
    assert cpu_decode.load() is not None
    built = list((tmp_path / "cpu-kernels").glob("nbinfer-cpu-*.so"))
    assert len(built) == 1
    monkeypatch.setattr(cpu_build, "_loaded", {})
    assert cpu_decode.load() is not None                     # reused, not rebuilt
    assert list((tmp_path / "cpu-kernels").glob("*")) == built


@pytest.mark.parametrize("env,expect", [({"NBINFER_CPU_KERNELS": "0"}, "NBINFER_CPU_KERNELS=0"),
                                        ({"CXX": "/bin/false"}, "could not build")])
def test_without_the_kernel_the_backend_falls_back_and_says_why(env, expect, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("NBINFER_CACHE_DIR", str(tmp_path))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(cpu_build, "_loaded", {})
    with caplog.at_level("INFO", logger="nbinfer"):
        backend = CpuAttention(4)
    assert backend.kernel is None
    assert expect in caplog.text
