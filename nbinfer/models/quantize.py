"""Weight-only int8: each matrix (the LM head and every layer's four projections) as int8 values and
one fp32 scale per output row, symmetric (scale = max |row| / 127), for the CPU step, which streams a
quarter of fp32's bytes per decode token (kernels/cpu/llama_step.cpp; activations and sums stay fp32).

The model's own weights are overwritten with the dequantized values (q * scale), so every path runs
the same quantized model: the C++ step on the int8 copy, torch's forward (large prefill steps) on
the dequantized one. The embedding is looked up, not multiplied, and stays as it is unless the LM
head shares it (tied), which then holds the dequantized values too.
"""
from __future__ import annotations

import torch

QUANTIZATIONS = ("int8",)


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w [N, K] -> (q int8 [N, K], scale fp32 [N]) with w ~= q * scale[:, None], |q| <= 127."""
    w32 = w.float()
    scale = w32.abs().amax(dim=1) / 127
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))    # an all-zero row: q = 0, any scale
    q = torch.round(w32 / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


@torch.no_grad()
def quantize_int8(model) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Quantizes the model's matrices in place (to their dequantized values); returns the int8 values
    and row scales keyed by each weight's data_ptr (as model.cpu_step_weights() lists them)."""
    out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for i, w in enumerate(model.cpu_step_weights()):
        if i == 0 or w is None or w.dim() != 2 or w.data_ptr() in out:
            continue
        q, scale = quantize_rows(w)
        w.copy_((q.float() * scale[:, None]).to(w.dtype))
        out[w.data_ptr()] = (q, scale)
    return out
