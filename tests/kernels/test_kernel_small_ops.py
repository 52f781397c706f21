"""RMSNorm(+residual), RoPE, SiLU*mul and the KV write against their torch references."""
import pytest
import torch

from kcheck import assert_close, poisoned, randn
from nbinfer.kernels import ops
from nbinfer.kernels.kv_write import kv_write, kv_write_ref
from nbinfer.kernels.rms_norm import rms_norm
from nbinfer.kernels.rope import apply_rope
from nbinfer.kernels.silu_mul import silu_and_mul
from nbinfer.models.rope import cos_sin_table

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
          "original_max_position_embeddings": 64}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows,dim", [(1, 16), (5, 64), (7, 96), (3, 200)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm(rows, dim, dtype, with_residual, device, rng):
    x = randn((rows, dim), dtype, device, rng, 3.0)
    w = randn((dim,), dtype, device, rng)
    res = randn((rows, dim), dtype, device, rng) if with_residual else None
    out = poisoned((rows, dim), dtype, device)
    res_out = poisoned((rows, dim), dtype, device) if with_residual else None
    got = rms_norm(x, w, 1e-6, res, out=out, residual_out=res_out)
    ref = ops.rms_norm_ref(x, w, 1e-6, res)
    if with_residual:
        assert_close(got[0], ref[0], dtype, "normed")
        if device.type == "cuda" or dtype != torch.bfloat16:
            assert torch.equal(got[1], ref[1]), "the residual sum must round exactly as torch does"
        else:   # Triton's interpreter truncates fp32 -> bf16 instead of rounding to nearest
            assert_close(got[1], ref[1], dtype, "residual sum")
        assert got[0].data_ptr() == out.data_ptr() and got[1].data_ptr() == res_out.data_ptr()
    else:
        assert_close(got, ref, dtype, "normed")


def test_rms_norm_per_head_on_strided_view(device, rng):
    """Qwen3's q/k norm: a [T, H, D] view of the fused qkv output, normalised per head."""
    qkv = randn((4, 3 * 2 * 32), torch.float32, device, rng)
    q = qkv[:, :64].view(4, 2, 32)
    w = randn((32,), torch.float32, device, rng)
    assert_close(rms_norm(q, w, 1e-6), ops.rms_norm_ref(q, w, 1e-6), torch.float32, "per-head norm")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,inter", [(1, 16), (3, 100), (2, 1500)])
def test_silu_and_mul(tokens, inter, dtype, device, rng):
    x = randn((tokens, 2 * inter), dtype, device, rng, 2.0)
    out = poisoned((tokens, inter), dtype, device)
    got = silu_and_mul(x, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert_close(got, ops.silu_and_mul_ref(x), dtype, "silu*mul")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,hq,hk,dim,scaling", [
    (1, 1, 1, 16, None), (5, 4, 2, 16, LLAMA3), (3, 6, 1, 64, None), (4, 8, 8, 128, LLAMA3), (2, 3, 3, 32, None)])
def test_rope_on_qkv_views(tokens, hq, hk, dim, scaling, dtype, device, rng):
    """q and k are strided views of the fused projection, positions random, llama3 table included."""
    qkv = randn((tokens, (hq + 2 * hk) * dim), dtype, device, rng)
    q = qkv[:, :hq * dim].view(tokens, hq, dim)
    k = qkv[:, hq * dim:(hq + hk) * dim].view(tokens, hk, dim)
    cos, sin = cos_sin_table(dim, 500000.0 if scaling else 10000.0, scaling, 64, 300, device)
    pos = torch.randint(0, 300, (tokens,), generator=rng).to(device)
    q_out, k_out = poisoned((tokens, hq, dim), dtype, device), poisoned((tokens, hk, dim), dtype, device)
    got_q, got_k = apply_rope(q, k, cos[pos], sin[pos], q_out=q_out, k_out=k_out)
    ref_q, ref_k = ops.rope_ref(q, k, cos[pos], sin[pos])
    assert_close(got_q, ref_q, dtype, "rope q")
    assert_close(got_k, ref_k, dtype, "rope k")


def test_rope_in_place(device, rng):
    q = randn((3, 4, 32), torch.float32, device, rng)
    k = randn((3, 2, 32), torch.float32, device, rng)
    cos, sin = cos_sin_table(32, 10000.0, None, 64, 16, device)
    pos = torch.tensor([0, 7, 15], device=device)
    ref_q, ref_k = ops.rope_ref(q, k, cos[pos], sin[pos])
    apply_rope(q, k, cos[pos], sin[pos], q_out=q, k_out=k)
    assert_close(q, ref_q, torch.float32, "in-place q")
    assert_close(k, ref_k, torch.float32, "in-place k")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tokens,heads,dim,page", [(1, 1, 16, 4), (6, 2, 64, 16), (9, 3, 128, 8)])
def test_kv_write_scatters_and_skips_padding(tokens, heads, dim, page, dtype, device, rng):
    num_blocks = 6
    k_cache = poisoned((num_blocks, page, heads, dim), dtype, device)
    v_cache = poisoned((num_blocks, page, heads, dim), dtype, device)
    kv = randn((tokens, 2, heads, dim), dtype, device, rng)      # strided k and v views
    k, v = kv[:, 0], kv[:, 1]
    slots = torch.randperm(num_blocks * page, generator=rng)[:tokens].to(device)
    if tokens > 2:
        slots[1] = -1                                           # a padding token: writes nothing
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    kv_write_ref(k, v, ref_k, ref_v, slots)
    kv_write(k, v, k_cache, v_cache, slots)
    for got, ref in ((k_cache, ref_k), (v_cache, ref_v)):
        assert torch.equal(torch.isnan(got), torch.isnan(ref)), "wrote outside the mapped slots"
        assert torch.equal(got.nan_to_num(), ref.nan_to_num())


def test_dispatch_uses_torch_on_cpu_unless_forced(rng):
    """The CPU path of the model is the reference itself (HF parity), unless tests force the kernels."""
    x = randn((2, 16), torch.float32, "cpu", rng)
    w = randn((16,), torch.float32, "cpu", rng)
    assert ops._kernels("rms_norm", x) is None
    ops.use_triton_on_cpu(True)
    try:
        if not torch.cuda.is_available():
            assert ops._kernels("rms_norm", x) is not None
            assert_close(ops.rms_norm(x, w, 1e-5), ops.rms_norm_ref(x, w, 1e-5), torch.float32, "forced")
    finally:
        ops.use_triton_on_cpu(False)
