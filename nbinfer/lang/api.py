"""The SGLang-compatible frontend API: `import nbinfer as sgl` runs programs written for
`import sglang as sgl`. Plus the seed's aliases: `SGLModel(model_path=..., device=...)` and
`@instruct` (whose run() result has a `.text` attribute).
"""
from __future__ import annotations

import re
import sys
from typing import Callable

from .backend import Backend, EngineBackend
from .choices import (ChoicesDecision, ChoicesSamplingMethod, greedy_token_selection, token_length_normalized,
                      unconditional_likelihood_normalized)
from .errors import SglCompileError, SglError
from .expr import GenParams, SglGen, SglRoleBegin, SglRoleEnd, SglSelect, role
from .program import SglFunction
from .sampling import REGEX_BOOL, REGEX_FLOAT, REGEX_INT, REGEX_STR
from .state import ProgramState, ProgramStateGroup

_default_backend: Backend | None = None


# -- programs -------------------------------------------------------------------------------------
def function(func: Callable | None = None, num_api_spec_tokens: int | None = None):
    """@sgl.function: the body is compiled to an instruction flow; .run() / .run_batch() run it."""
    if func is not None:
        return SglFunction(func)
    return SglFunction


instruct = function     # the seed's name


# -- expressions ----------------------------------------------------------------------------------
def gen(name: str | None = None, max_tokens: int | None = None, min_tokens: int | None = None,
        n: int | None = None, stop: str | list[str] | None = None, stop_token_ids: list[int] | None = None,
        stop_regex: str | list[str] | None = None, temperature: float | None = None, top_p: float | None = None,
        top_k: int | None = None, min_p: float | None = None, frequency_penalty: float | None = None,
        presence_penalty: float | None = None, ignore_eos: bool | None = None, return_logprob: bool | None = None,
        logprob_start_len: int | None = None, top_logprobs_num: int | None = None,
        return_text_in_logprobs: bool | None = None, dtype=None, choices: list[str] | None = None,
        choices_method: ChoicesSamplingMethod | None = None, regex: str | None = None,
        json_schema: str | dict | None = None):
    """Generate into variable `name`. With `choices`, a select. `regex` / `json_schema` / `dtype`
    constrain the output (a token mask: it always matches)."""
    if choices:
        return SglSelect(name, list(choices), 0.0 if temperature is None else temperature, choices_method)
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as e:
            raise SglError(f"gen({name!r}): regex {regex!r} is invalid: {e}") from None
    return SglGen(name, GenParams(
        max_tokens=max_tokens, min_tokens=min_tokens, n=n, stop=stop, stop_token_ids=stop_token_ids,
        stop_regex=stop_regex, temperature=temperature, top_p=top_p, top_k=top_k, min_p=min_p,
        frequency_penalty=frequency_penalty, presence_penalty=presence_penalty, ignore_eos=ignore_eos,
        return_logprob=return_logprob, logprob_start_len=logprob_start_len, top_logprobs_num=top_logprobs_num,
        return_text_in_logprobs=return_text_in_logprobs, dtype=dtype, regex=regex, json_schema=json_schema))


def gen_int(name: str | None = None, **kwargs):
    return gen(name, dtype=int, **kwargs)


def gen_string(name: str | None = None, **kwargs):
    return gen(name, dtype=str, **kwargs)


def select(name: str | None = None, choices: list[str] | None = None, temperature: float = 0.0,
           choices_method: ChoicesSamplingMethod = token_length_normalized):
    """Pick one of `choices` by the model's length-normalized log-prob of each after the text so far."""
    if not choices:
        raise SglError(f"select({name!r}) needs choices")
    return SglSelect(name, list(choices), temperature, choices_method)


def system(expr=None):
    return role("system", expr)


def user(expr=None):
    return role("user", expr)


def assistant(expr=None):
    return role("assistant", expr)


def system_begin():
    return SglRoleBegin("system")


def system_end():
    return SglRoleEnd("system")


def user_begin():
    return SglRoleBegin("user")


def user_end():
    return SglRoleEnd("user")


def assistant_begin():
    return SglRoleBegin("assistant")


def assistant_end():
    return SglRoleEnd("assistant")


def image(*args, **kwargs):
    raise SglError("sgl.image() is not supported: nbinfer serves text-only models")


def video(*args, **kwargs):
    raise SglError("sgl.video() is not supported: nbinfer serves text-only models")


# -- backends -------------------------------------------------------------------------------------
class Runtime:
    """An engine in this process (SGLang's Runtime starts a server; here the engine is the LLM).

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
        from ..llm import LLM
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
        return self.backend

    def get_tokenizer(self):
        return self.llm.tokenizer

    def cache_prefix(self, prefix: str) -> None:
        from .context import ProgramRun
        from .sampling import RunDefaults
        self.backend.cache_prefix(prefix, ProgramRun(self.backend, RunDefaults(), "cache_prefix"))

    def flush_cache(self) -> None:
        self.backend.flush_cache()

    def shutdown(self) -> None:
        """Free the engine's weights and KV cache."""
        global _default_backend
        if _default_backend is self.backend:
            _default_backend = None
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


def _as_backend(obj) -> Backend:
    if isinstance(obj, Backend):
        return obj
    if isinstance(obj, Runtime):
        return obj.backend
    if hasattr(obj, "submit") and hasattr(obj, "tokenizer"):     # an nbinfer.LLM
        return EngineBackend.for_llm(obj)
    raise SglError(f"a backend must be an sgl.Runtime, an nbinfer.LLM or a Backend, got {type(obj).__name__}")


def set_default_backend(backend) -> None:
    """Programs run on this backend unless run(backend=...) says otherwise."""
    global _default_backend
    _default_backend = None if backend is None else _as_backend(backend)


def get_default_backend() -> Backend | None:
    return _default_backend


def _session_backend() -> Backend | None:
    """The notebook's engine (`%nbinfer load`), if the Jupyter session has one."""
    session = sys.modules.get("nbinfer.jupyter.session")
    if session is None:
        return None
    llm = session.current_llm()         # never loads a model as a side effect
    return EngineBackend.for_llm(llm) if llm is not None else None


def resolve_backend(explicit=None, prefer_session: bool = False) -> Backend:
    """run(backend=...) > the default backend > the notebook's engine. A %%sgl cell asks for the
    notebook's engine first (prefer_session)."""
    if explicit is not None:
        return _as_backend(explicit)
    session = _session_backend() if prefer_session or _default_backend is None else None
    if prefer_session and session is not None:
        return session
    if _default_backend is not None:
        return _default_backend
    if session is not None:
        return session
    raise SglError("no model to run the program on: load one (`%nbinfer load` in a notebook, or "
                   "sgl.set_default_backend(sgl.Runtime(model_path=...))), or pass run(backend=...)")


def flush_cache(backend=None) -> bool:
    try:
        b = resolve_backend(backend)
    except SglError:
        return False
    b.flush_cache()
    return True


def get_server_info(backend=None) -> dict | None:
    try:
        b = resolve_backend(backend)
    except SglError:
        return None
    llm = getattr(b, "llm", None)
    if llm is None:
        return {"backend": type(b).__name__}
    st = llm.stats()
    return {"model": st.model, "device": st.device, "dtype": st.dtype, "max_model_len": st.max_model_len,
            "num_running": st.num_running, "num_waiting": st.num_waiting}


# names every program body sees without importing them (a %%sgl cell's "builtins")
PROGRAM_NAMES = (
    "gen", "gen_int", "gen_string", "select", "system", "user", "assistant", "system_begin", "system_end",
    "user_begin", "user_end", "assistant_begin", "assistant_end", "function", "instruct",
    "REGEX_INT", "REGEX_FLOAT", "REGEX_BOOL", "REGEX_STR",
)

__all__ = [
    "function", "instruct", "gen", "gen_int", "gen_string", "select", "system", "user", "assistant",
    "system_begin", "system_end", "user_begin", "user_end", "assistant_begin", "assistant_end", "image", "video",
    "Runtime", "SGLModel", "set_default_backend", "get_default_backend", "flush_cache", "get_server_info",
    "REGEX_INT", "REGEX_FLOAT", "REGEX_BOOL", "REGEX_STR", "ProgramState", "ProgramStateGroup", "SglFunction",
    "SglError", "SglCompileError", "ChoicesDecision", "ChoicesSamplingMethod", "token_length_normalized",
    "greedy_token_selection", "unconditional_likelihood_normalized",
]
