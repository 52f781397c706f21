"""Our own PyTorch decoders and the code that loads them (HF is used for configs and tokenizers only)."""
