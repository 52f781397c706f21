"""Sampling arguments of an SGL program: the run's defaults, gen()'s overrides, and the resolved,
backend-neutral request a backend turns into its own parameters."""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, fields

from .errors import SglError
from .expr import GenParams

# SGLang's regexes for gen(dtype=...): the same language, so outputs parse the same way.
REGEX_INT = r"[-+]?[0-9]+[ \n]*"
REGEX_FLOAT = r"[-+]?[0-9]*\.?[0-9]+[ \n]*"
REGEX_BOOL = r"(True|False)"
REGEX_STR = r"\"[\w\d\s]*\""

_DTYPES = {int: REGEX_INT, "int": REGEX_INT, float: REGEX_FLOAT, "float": REGEX_FLOAT,
           bool: REGEX_BOOL, "bool": REGEX_BOOL, str: REGEX_STR, "str": REGEX_STR}


@dataclass(frozen=True)
class RunDefaults:
    """f.run(...)'s sampling arguments: SGLang's names and defaults."""
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    ignore_eos: bool = False
    return_logprob: bool | None = None
    logprob_start_len: int | None = None
    top_logprobs_num: int | None = None
    return_text_in_logprobs: bool | None = None

    @classmethod
    def make(cls, **kwargs) -> "RunDefaults":
        for name in ("stop", "stop_token_ids"):
            v = kwargs.get(name)
            kwargs[name] = (v,) if isinstance(v, (str, int)) else tuple(v or ())
        return cls(**kwargs)

    @classmethod
    def split(cls, kwargs: dict) -> tuple["RunDefaults", dict]:
        """run()'s keyword arguments -> (the sampling defaults among them, the rest): one list of
        names and defaults (this class's fields) for run(), run_batch() and the %%sgl magic."""
        names = {f.name for f in fields(cls)}
        return (cls.make(**{k: v for k, v in kwargs.items() if k in names}),
                {k: v for k, v in kwargs.items() if k not in names})


@dataclass(frozen=True)
class GenRequest:
    """One resolved gen: what a backend needs to run it."""
    max_tokens: int
    temperature: float
    top_p: float
    top_k: int
    min_p: float
    frequency_penalty: float
    presence_penalty: float
    ignore_eos: bool
    stop: tuple[str, ...]
    stop_token_ids: tuple[int, ...]
    regex: str | None = None
    json_schema: str | None = None
    return_logprob: bool = False
    top_logprobs_num: int = 0


_warned: set[str] = set()


def _warn_once(what: str) -> None:
    if what not in _warned:
        _warned.add(what)
        warnings.warn(what, stacklevel=4)


def resolve(defaults: RunDefaults, p: GenParams, extra_stop_ids: tuple[int, ...] = ()) -> GenRequest:
    """gen()'s arguments over the run's defaults (SGLang semantics: None means the default)."""
    def pick(name, default):
        v = getattr(p, name)
        return default if v is None else v

    if p.n not in (None, 1):
        raise SglError(f"gen(n={p.n}) is not supported; use s.fork({p.n}) for several samples")
    if p.min_tokens:
        _warn_once("gen(min_tokens=...) is not supported by nbinfer's engine and is ignored")
    if p.stop_regex:
        _warn_once("gen(stop_regex=...) is not supported by nbinfer's engine and is ignored")
    stop = p.stop if p.stop is not None else defaults.stop
    stop = [stop] if isinstance(stop, str) else list(stop or ())
    regex, schema = p.regex, p.json_schema
    if p.dtype is not None:
        if p.dtype not in _DTYPES:
            raise SglError(f"gen(dtype={p.dtype!r}) must be int, float, bool or str")
        if regex is not None:
            _warn_once("gen() got both dtype and regex; dtype wins (as in SGLang)")
        regex = _DTYPES[p.dtype]
        if p.dtype in (int, "int", float, "float"):
            stop += [" ", "\n"]       # a number ends at the first space or newline
    if regex is not None and schema is not None:
        raise SglError("gen() takes regex or json_schema, not both")
    if isinstance(schema, dict):
        schema = json.dumps(schema)
    elif schema is not None and not isinstance(schema, str):
        raise SglError(f"gen(json_schema=...) must be a JSON string or a dict, got {type(schema).__name__}")
    return_logprob = bool(pick("return_logprob", defaults.return_logprob))
    top = pick("top_logprobs_num", defaults.top_logprobs_num) or 0
    return GenRequest(
        max_tokens=pick("max_tokens", defaults.max_new_tokens),
        temperature=pick("temperature", defaults.temperature),
        top_p=pick("top_p", defaults.top_p),
        top_k=pick("top_k", defaults.top_k),
        min_p=pick("min_p", defaults.min_p),
        frequency_penalty=pick("frequency_penalty", defaults.frequency_penalty),
        presence_penalty=pick("presence_penalty", defaults.presence_penalty),
        ignore_eos=pick("ignore_eos", defaults.ignore_eos),
        stop=tuple(dict.fromkeys(stop)),
        stop_token_ids=tuple(dict.fromkeys(list(p.stop_token_ids if p.stop_token_ids is not None
                                                else defaults.stop_token_ids) + list(extra_stop_ids))),
        regex=regex, json_schema=schema,
        return_logprob=return_logprob or bool(top), top_logprobs_num=top)
