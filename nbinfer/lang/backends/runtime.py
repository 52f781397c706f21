"""sgl.Runtime: an engine in this process as an SGL backend (SGLang's Runtime starts a server; here
the engine is an nbinfer.LLM), and the seed's SGLModel, which also becomes the default backend."""
from __future__ import annotations

from ...llm import LLM
from ..context import ProgramRun
from ..sampling import RunDefaults
from .default import drop_default_backend, set_default_backend
from .engine import EngineBackend


class Runtime:
    """An engine in this process.

        rt = sgl.Runtime(model_path="...", dtype="float16", num_kv_blocks=...)   # LLM(...) options
        sgl.set_default_backend(rt)
        ...
        rt.shutdown()
    """

    # SGLang server options with an LLM equivalent, and ones that mean nothing in-process
    _RENAMED = {"tp_size": "tensor_parallel_size", "mem_fraction_static": "gpu_memory_utilization",
                "context_length": "max_model_len", "max_running_requests": "max_num_seqs",
                "random_seed": "seed", "tokenizer_path": None, "log_level": None, "port": None, "host": None,
                "launch_timeout": None}

    def __init__(self, model_path: str | None = None, **kwargs):
        options = {}
        for key, value in kwargs.items():
            if key in self._RENAMED:
                if self._RENAMED[key] is not None:
                    options[self._RENAMED[key]] = value
            else:
                options[key] = value
        self.llm = LLM(model=model_path, **options)
        self.backend = EngineBackend(self.llm, owns_llm=True)

    @property
    def endpoint(self) -> EngineBackend:
        """The backend programs run on (SGLang's name: its Runtime's endpoint)."""
        return self.backend

    def get_tokenizer(self):
        return self.llm.tokenizer

    def cache_prefix(self, prefix: str) -> None:
        self.backend.cache_prefix(prefix, ProgramRun(self.backend, RunDefaults(), "cache_prefix"))

    def flush_cache(self) -> None:
        self.backend.flush_cache()

    def shutdown(self) -> None:
        """Free the engine's weights and KV cache."""
        drop_default_backend(self.backend)
        self.backend.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.llm!r})"


class SGLModel(Runtime):
    """The seed's name: loads the model and makes it the default backend."""

    def __init__(self, model_path: str | None = None, device: str = "auto", **kwargs):
        super().__init__(model_path, device=device, **kwargs)
        set_default_backend(self)
