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
from .version import __version__

# The SGL language (SGLang's frontend API) is imported on first use, so `import nbinfer` stays light:
# its names (nbinfer.lang.api.__all__, the one list of them) resolve through __getattr__ below.
_ENGINE_EXPORTS = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "Logprob", "RequestMetrics",
                   "EngineStats", "RequestStats", "RequestHandle", "default_model_path"]


def _sgl_api():
    from .lang import api
    return api


def load_ipython_extension(ipython):
    """`%load_ext nbinfer`: imported lazily so `import nbinfer` never imports IPython."""
    from .jupyter import load_ipython_extension as load
    load(ipython)


def unload_ipython_extension(ipython):
    from .jupyter import unload_ipython_extension as unload
    unload(ipython)


def __getattr__(name: str):
    if name == "__all__":               # `from nbinfer import *` asks for it: the engine's names and SGL's
        return [*_ENGINE_EXPORTS, *_sgl_api().__all__]
    if not name.startswith("__"):       # (dunder probes -- copy, pickle, IPython -- never import the language)
        api = _sgl_api()
        if name in api.__all__:
            value = getattr(api, name)
            globals()[name] = value
            return value
    raise AttributeError(f"module 'nbinfer' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_sgl_api().__all__))
