"""nbinfer's kernels (shipped as `nbinfer.kernels`): Triton for CUDA and one C++ kernel for the CPU,
each beside a torch reference.

    ops.py                the model's fused ops: dispatch (Triton on CUDA, torch elsewhere) + references
    rms_norm.py           fused residual-add + RMSNorm
    rope.py               rotary embedding from gathered cos/sin rows
    silu_mul.py           SiLU(gate) * up
    kv_write.py           scatter new K/V rows into the paged cache through a slot mapping
    decode_attention.py   paged decode attention (GQA/MQA, split-KV flash-decoding)
    extend_attention.py   paged prefill/extend attention (causal over a cached prefix + new tokens)
    cpu_build.py          compiles cpu/*.cpp (C++) into one cached library with one thread pool (cpu/thread_pool.h)
    cpu_decode.py         the CPU backend's paged attention, decode and prefill (cpu/paged_attention.cpp)
    cpu_llama.py          a small step through a whole Llama-family model (fp32/bf16) in one call (cpu/llama_step.cpp)
    cpu_features.py       native bf16 on this CPU (dtype="auto")
    aot.py                records Triton launches and compiles them ahead of time for a GPU target (no GPU)
    aot_shapes.py         the engine's launches at its models' shapes, compiled for sm_80/sm_90 (CI check)

The engine's attention backend built from them lives in nbinfer/engine/attention/triton_backend.py:
nothing here imports the engine. Importing this package (ops.py, cpu_decode.py) needs only torch; the Triton kernel modules import triton.
"""
