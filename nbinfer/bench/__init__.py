"""`nbinfer bench`: synthetic workloads, nbinfer vs HF transformers in one run, roofline on CUDA."""
