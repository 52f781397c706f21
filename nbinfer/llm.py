"""LLM: the vLLM-compatible front door. Everything here goes through Engine.submit and handles."""
from __future__ import annotations

import inspect
from dataclasses import MISSING, fields
from typing import Sequence as Seq, get_type_hints

from .engine.config import EngineConfig
from .engine.engine import Engine
from .engine.handle import RequestHandle, cancel_all
from .engine.outputs import RequestOutput
from .engine.sampling_params import SamplingParams
from .engine.stats import EngineStats
from .engine.submission import encode


class LLM:
    """An engine living in this process. `with LLM(...) as llm:` frees weights and KV on exit.

    Its options are EngineConfig's fields (nbinfer/engine/config.py) with their defaults, by keyword or in
    that order by position (vLLM's first thirteen lead); the signature and the list below are built from them.
    """

    def __init__(self, *args, **options):
        if len(args) > len(_OPTIONS):
            raise TypeError(f"LLM() takes at most {len(_OPTIONS)} positional arguments ({len(args)} given)")
        for name, value in zip(_OPTIONS, args):
            if name in options:
                raise TypeError(f"LLM() got multiple values for argument {name!r}")
            options[name] = value
        if options.get("model") is not None:
            options["model"] = str(options["model"])      # a pathlib.Path works too
        self.engine: Engine | None = Engine(EngineConfig.from_kwargs(**options))

    # -- properties -------------------------------------------------------------------------------
    @property
    def _engine(self) -> Engine:
        if self.engine is None:
            raise RuntimeError("this LLM has been shut down")
        return self.engine

    @property
    def tokenizer(self):
        return self._engine.tokenizer

    def get_tokenizer(self):
        return self._engine.tokenizer

    @property
    def config(self) -> EngineConfig:
        return self._engine.cfg

    @property
    def max_model_len(self) -> int:
        return self._engine.max_model_len

    def get_default_sampling_params(self) -> SamplingParams:
        """SamplingParams carrying the model's generation_config.json recommendations (vLLM's name)."""
        return SamplingParams(**self._engine.generation_defaults)

    # -- requests ---------------------------------------------------------------------------------
    def submit(self, prompt, sampling_params: SamplingParams | None = None, *, request_id: str | None = None,
               program_id: str | None = None, origin: str = "api") -> RequestHandle:
        """Queue one prompt; returns at once. Thread-safe. `origin` tags the request in stats()."""
        return self._engine.submit(prompt, sampling_params, request_id=request_id, program_id=program_id,
                                   origin=origin)

    def generate(self, prompts, sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
                 use_tqdm: bool = False) -> list[RequestOutput]:
        """Run a batch to completion; outputs in prompt order. Ctrl-C cancels what is still running."""
        if isinstance(prompts, (str, dict)):
            prompts = [prompts]
        if not isinstance(prompts, (list, tuple)):
            raise ValueError(f"prompts must be a str, a dict with 'prompt_token_ids', or a list of them; "
                             f"got {type(prompts).__name__}")
        prompts = list(prompts)
        params = self._params_per_prompt(sampling_params, len(prompts))
        return self._run(prompts, params, use_tqdm)

    def chat(self, messages, sampling_params: SamplingParams | Seq[SamplingParams] | None = None,
             use_tqdm: bool = False, chat_template: str | None = None, add_generation_prompt: bool = True,
             continue_final_message: bool = False) -> list[RequestOutput]:
        """One conversation (list of {"role", "content"}) or a list of them, through the chat template."""
        conversations = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        prompts = [self.apply_chat_template(c, chat_template, add_generation_prompt, continue_final_message)
                   for c in conversations]
        return self._run(prompts, self._params_per_prompt(sampling_params, len(prompts)), use_tqdm)

    def apply_chat_template(self, conversation, chat_template: str | None = None,
                            add_generation_prompt: bool = True, continue_final_message: bool = False) -> dict:
        tok = self.tokenizer
        if chat_template is None and not getattr(tok, "chat_template", None):
            raise ValueError("this model's tokenizer has no chat template; pass chat_template=...")
        for i, m in enumerate(conversation):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content'")
        text = tok.apply_chat_template(conversation, chat_template=chat_template, tokenize=False,
                                       add_generation_prompt=add_generation_prompt and not continue_final_message,
                                       continue_final_message=continue_final_message)
        # the template already wrote BOS and friends: do not add them twice
        return {"prompt": text, "prompt_token_ids": encode(tok, text, add_special_tokens=False)}

    def _params_per_prompt(self, sampling_params, n: int) -> list[SamplingParams]:
        if sampling_params is None:
            return [SamplingParams()] * n
        if isinstance(sampling_params, SamplingParams):
            return [sampling_params] * n
        params = list(sampling_params)
        if len(params) != n:
            raise ValueError(f"got {len(params)} SamplingParams for {n} prompts; pass one, or one per prompt")
        return params

    def _run(self, prompts: list, params: list[SamplingParams], use_tqdm: bool) -> list[RequestOutput]:
        handles: list[RequestHandle] = []
        try:
            for i, (prompt, p) in enumerate(zip(prompts, params)):
                try:
                    handles.append(self.submit(prompt, p))
                except ValueError as e:
                    raise ValueError(f"prompt {i}: {e}" if len(prompts) > 1 else str(e)) from None
            if use_tqdm:
                from tqdm.auto import tqdm
                bar = tqdm(total=len(handles), desc="Processed prompts", dynamic_ncols=True)
                outputs = []
                for h in handles:
                    outputs.append(h.result())
                    bar.update(1)
                bar.close()
                return outputs
            return [h.result() for h in handles]
        except BaseException:
            cancel_all(handles)
            raise

    # -- engine -----------------------------------------------------------------------------------
    def stats(self) -> EngineStats:
        return self._engine.stats()

    def reset_prefix_cache(self) -> None:
        """Forget every cached prefix block that no request is using."""
        self._engine.reset_prefix_cache()

    def shutdown(self) -> None:
        """Stop the engine thread and free weights and KV (GPU memory returns to where it was)."""
        if self.engine is not None:
            self.engine.shutdown()
            self.engine = None

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        if self.engine is None:
            return "LLM(shut down)"
        e = self.engine
        return f"LLM(model={e.cfg.model or 'default'!r}, device={e.device}, dtype={e.dtype}, blocks={e.pool.num_blocks})"


_OPTIONS = tuple(f.name for f in fields(EngineConfig))


def _options_signature() -> inspect.Signature:
    """LLM.__init__'s signature as help() and inspect.signature() show it: one parameter per option."""
    hints = get_type_hints(EngineConfig)
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=hints[f.name],
                                 default=None if f.default is MISSING else f.default) for f in fields(EngineConfig)]
    return inspect.Signature(params)


def _options_doc() -> str:
    lines = [f"    {f.name}={f.default!r}: {f.metadata['help']}" for f in fields(EngineConfig)]
    return "\n\nOptions:\n" + "\n".join(lines) + "\n"


LLM.__init__.__signature__ = _options_signature()
LLM.__doc__ += _options_doc()
