"""nbinfer's kernels (shipped as `nbinfer.kernels`): Triton for CUDA and one C++ kernel for the CPU,
each beside a torch reference.

    ops.py                the model's fused ops: dispatch (Triton on CUDA, torch elsewhere) + references
    rms_norm.py           fused residual-add + RMSNorm
    rope.py               rotary embedding from gathered cos/sin rows
    silu_mul.py           SiLU(gate) * up
    kv_write.py           scatter new K/V rows into the paged cache through a slot mapping
    decode_attention.py   paged decode attention (GQA/MQA, split-KV flash-decoding)
    extend_attention.py   paged prefill/extend attention (causal over a cached prefix + new tokens)
    cpu_decode.py         builds and loads cpu/paged_decode.cpp, the CPU backend's decode attention (C++)

The engine's attention backend built from them lives in nbinfer/engine/attention/triton_backend.py:
nothing here imports the engine. Importing this package (ops.py, cpu_decode.py) needs only torch; the Triton kernel modules import triton.
"""
