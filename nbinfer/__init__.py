"""nbinfer: a Jupyter-native LLM inference engine.

    from nbinfer import LLM, SamplingParams        # vLLM's API
    import nbinfer as sgl                          # SGLang's frontend language
    %load_ext nbinfer                              # %%generate / %%sgl cells, live dashboard
"""
from .engine.outputs import CompletionOutput, Logprob, RequestMetrics, RequestOutput
from .engine.sampling_params import SamplingParams
from .engine.stats import EngineStats, RequestStats
from .engine.handle import RequestHandle
from .llm import LLM
from .models.loader import default_model_path

__version__ = "0.1.0"


def load_ipython_extension(ipython):
    """`%load_ext nbinfer`: imported lazily so `import nbinfer` never imports IPython."""
    from .jupyter import load_ipython_extension as load
    load(ipython)


def unload_ipython_extension(ipython):
    from .jupyter import unload_ipython_extension as unload
    unload(ipython)


__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "Logprob", "RequestMetrics",
           "EngineStats", "RequestStats", "RequestHandle", "default_model_path"]
