"""Paged attention: the step's metadata, the backend base class, one module per backend, and the
registry that names them.

    metadata.py        AttentionMetadata: slots, lengths, block tables of one step
    base.py            AttentionBackend: the interface, and the prefill loop the host backends share
    nhd_layout.py      the token-major cache of the torch and Triton backends
    torch_backend.py   TorchAttention: the plain PyTorch reference
    cpu_backend.py     CpuAttention: head-major cache, C++ decode kernel
    triton_backend.py  TritonAttention: the Triton kernels of nbinfer.kernels
    registry.py        name -> backend; every list of backend names comes from here
"""
from .base import AttentionBackend
from .metadata import AttentionMetadata
from .registry import backend_names, make_backend, resolve_backend_name

__all__ = ["AttentionBackend", "AttentionMetadata", "backend_names", "make_backend", "resolve_backend_name"]
