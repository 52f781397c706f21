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

# The SGL language (SGLang's frontend API), imported on first use so `import nbinfer` stays light.
_SGL_EXPORTS = (
    "function", "instruct", "gen", "gen_int", "gen_string", "select", "system", "user", "assistant",
    "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end", "image", "video",
    "Runtime", "RuntimeEndpoint", "OpenAI", "SGLModel", "set_default_backend", "get_default_backend", "flush_cache", "get_server_info",
    "REGEX_INT", "REGEX_FLOAT", "REGEX_BOOL", "REGEX_STR", "ProgramState", "ProgramStateGroup", "SglFunction",
    "SglError", "SglCompileError", "token_length_normalized", "greedy_token_selection",
    "unconditional_likelihood_normalized",
)


def load_ipython_extension(ipython):
    """`%load_ext nbinfer`: imported lazily so `import nbinfer` never imports IPython."""
    from .jupyter import load_ipython_extension as load
    load(ipython)


def unload_ipython_extension(ipython):
    from .jupyter import unload_ipython_extension as unload
    unload(ipython)


__all__ = ["LLM", "SamplingParams", "RequestOutput", "CompletionOutput", "Logprob", "RequestMetrics",
           "EngineStats", "RequestStats", "RequestHandle", "default_model_path", *_SGL_EXPORTS]


def __getattr__(name: str):
    if name in _SGL_EXPORTS:
        from .lang import api
        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nbinfer' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SGL_EXPORTS))
