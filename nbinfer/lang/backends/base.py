"""The Backend interface -- text in, text and log-probs out -- and the registry of backend kinds.

A program's state calls a backend for each `gen` / `select`; nothing above this interface knows
where the model is. A new kind of backend (a remote SGLang server, an OpenAI-compatible API)
subclasses `Backend` and registers itself under a name:

    @register_backend("sglang")
    class RuntimeEndpoint(Backend):
        ...

Registration gives it a place in `backend_kinds()` (where lists of choices come from) and lets
`as_backend` turn the objects it serves (an `nbinfer.LLM`, a remote client) into it; an instance of
any Backend subclass, registered or not, can be passed to `set_default_backend` / `run(backend=...)`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from ..chat_template import ChatTemplate
from ..context import ProgramRun
from ..errors import SglError
from ..sampling import GenRequest

# (logprob, token id, token text): the shape of SGLang's input_token_logprobs entries
TokenLogprob = tuple[float, int, str]


@dataclass
class GenResult:
    text: str
    meta: dict = field(default_factory=dict)


class Backend(ABC):
    """What a program needs from a model.

    Must: `chat_template` (role edges; a ChatTemplate over the model's tokenizer, or over an object
    without a template for SGLang's plain roles), `generate`, `choice_logprobs`. May: the rest.
    For Ctrl-C and cancel() to reach a request, call run.check() before sending it and keep it
    registered with run.track(request) (anything with cancel()) until it ends (run.untrack);
    record its token counts with run.stats.record(...).
    """

    kind: ClassVar[str | None] = None       # its name in the registry (set by @register_backend)
    serves: ClassVar[str] = ""              # what `wrap` accepts, in words, for error messages

    @classmethod
    def wrap(cls, obj) -> "Backend | None":
        """A backend of this kind for `obj` (e.g. an nbinfer.LLM), or None if it serves no such object."""
        return None

    @property
    @abstractmethod
    def chat_template(self) -> ChatTemplate: ...

    @abstractmethod
    def generate(self, prompt: str, req: GenRequest, run: ProgramRun, on_delta=None) -> GenResult:
        """Continue `prompt`; calls on_delta(text) as text arrives; blocks until done. Cancelled
        (or interrupted) requests are aborted before this returns or raises."""

    @abstractmethod
    def choice_logprobs(self, prefix: str, choices: list[str], run: ProgramRun) -> list[list[TokenLogprob]]:
        """For each choice: the log-prob of each of its tokens after `prefix` (tokenized together
        with it), all choices in one batch."""

    def unconditional_logprobs(self, token_ids: list[list[int]], run: ProgramRun) -> list[list[TokenLogprob]]:
        """Log-probs of each token sequence on its own (the first token has none: 0)."""
        raise NotImplementedError(f"{type(self).__name__} cannot score text without a prefix")

    def cache_prefix(self, prefix: str, run: ProgramRun) -> None:
        """Compute `prefix` once so that the forks about to share it find it cached."""

    def flush_cache(self) -> None:
        """Forget cached prefixes."""

    def server_info(self) -> dict:
        """What sgl.get_server_info() reports about this backend."""
        return {"backend": type(self).__name__}

    def shutdown(self) -> None:
        """Free what this backend owns."""


_KINDS: dict[str, type[Backend]] = {}


def register_backend(kind: str):
    """Class decorator: make a Backend subclass known under `kind`."""
    def register(cls: type[Backend]) -> type[Backend]:
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise TypeError(f"register_backend({kind!r}) decorates a Backend subclass, got {cls!r}")
        if _KINDS.get(kind, cls) is not cls:
            raise ValueError(f"a backend kind named {kind!r} is already registered: {_KINDS[kind].__name__}")
        cls.kind = kind
        _KINDS[kind] = cls
        return cls
    return register


def backend_kinds() -> dict[str, type[Backend]]:
    """The registered kinds of backend, by name, in registration order."""
    return dict(_KINDS)


def as_backend(obj) -> Backend:
    """The backend `obj` stands for: a Backend itself; an object that carries its backend as
    `.endpoint` (sgl.Runtime, as in SGLang); or what a registered kind wraps it in."""
    if isinstance(obj, Backend):
        return obj
    endpoint = getattr(obj, "endpoint", None)
    if isinstance(endpoint, Backend):
        return endpoint
    for cls in _KINDS.values():
        backend = cls.wrap(obj)
        if backend is not None:
            return backend
    served = "".join(f", {cls.serves}" for cls in _KINDS.values() if cls.serves)
    raise SglError(f"a backend must be an sgl.Runtime{served} or a Backend, got {type(obj).__name__}")
