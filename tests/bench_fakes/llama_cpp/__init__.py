"""Fake llama-cpp-python (tests only): a Llama whose generate() counts up from the prompt's last id."""
import os

__version__ = "0.0-fake"


class Llama:
    def __init__(self, model_path, n_ctx, n_batch, n_threads, n_threads_batch, n_gpu_layers, seed, verbose):
        assert os.path.isfile(model_path) and n_threads >= 1 and n_ctx >= 1
        self.metadata = {"general.file_type": "3"}
        self.n_ctx = n_ctx

    def reset(self):
        pass

    def generate(self, tokens, top_k, top_p, min_p, temp, repeat_penalty):
        assert top_k == 1 and temp == 0.0 and len(tokens) < self.n_ctx
        last = tokens[-1]
        while True:
            last = (last + 1) % 1000
            yield last
