"""The SGLang-compatible frontend API: `import nbinfer as sgl` runs programs written for
`import sglang as sgl`. Plus the seed's aliases: `SGLModel(model_path=..., device=...)` and
`@instruct` (whose run() result has a `.text` attribute).

A facade: every name is defined in the module that owns it.
"""
from .backends import (OpenAI, Runtime, RuntimeEndpoint, SGLModel, flush_cache, get_default_backend, get_server_info,
                       set_default_backend)
from .choices import (ChoicesDecision, ChoicesSamplingMethod, greedy_token_selection, token_length_normalized,
                      unconditional_likelihood_normalized)
from .errors import SglCompileError, SglError
from .primitives import (assistant, assistant_begin, assistant_end, gen, gen_int, gen_string, image, select,
                         separate_reasoning, system, system_begin, system_end, user, user_begin, user_end, video)
from .program import SglFunction, function, instruct
from .sampling import REGEX_BOOL, REGEX_FLOAT, REGEX_INT, REGEX_STR
from .state import ProgramState, ProgramStateGroup

__all__ = [
    "function", "instruct", "gen", "gen_int", "gen_string", "select", "system", "user", "assistant",
    "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end", "image", "video",
    "separate_reasoning", "Runtime", "RuntimeEndpoint", "OpenAI", "SGLModel", "set_default_backend", "get_default_backend", "flush_cache", "get_server_info",
    "REGEX_INT", "REGEX_FLOAT", "REGEX_BOOL", "REGEX_STR", "ProgramState", "ProgramStateGroup", "SglFunction",
    "SglError", "SglCompileError", "ChoicesDecision", "ChoicesSamplingMethod", "token_length_normalized",
    "greedy_token_selection", "unconditional_likelihood_normalized",
]
