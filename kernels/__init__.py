"""nbinfer's Triton kernels (shipped as `nbinfer.kernels`), each beside a plain-torch reference.

    ops.py                the model's fused ops: dispatch (Triton on CUDA, torch elsewhere) + references
    rms_norm.py           fused residual-add + RMSNorm
    rope.py               rotary embedding from gathered cos/sin rows
    silu_mul.py           SiLU(gate) * up
    kv_write.py           scatter new K/V rows into the paged cache through a slot mapping
    decode_attention.py   paged decode attention (GQA/MQA, split-KV flash-decoding)
    extend_attention.py   paged prefill/extend attention (causal over a cached prefix + new tokens)
    attention_backend.py  TritonAttention: the engine's attention backend built from the above

Importing this package (and ops.py) needs only torch; the kernel modules import triton.
"""
