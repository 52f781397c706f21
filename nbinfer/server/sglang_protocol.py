"""Request bodies of SGLang's native API (/generate), with SGLang's names and defaults.

SGLang's own frontend (0.5.2) sends `logprob_start_len`, `top_logprobs_num` and
`return_text_in_logprobs` as `[null]` when a gen leaves them unset, so those accept a list for a
single prompt too (one value per prompt, null = the default).
"""
from __future__ import annotations

from typing import Any, Optional, Union

from .openai_protocol import ApiModel

MaybePerPrompt = Optional[Union[int, list[Optional[int]]]]
FlagPerPrompt = Optional[Union[bool, list[Optional[bool]]]]


class SglSamplingParams(ApiModel):
    max_new_tokens: Optional[int] = 128
    min_new_tokens: int = 0
    stop: Optional[Union[str, list[str]]] = None
    stop_token_ids: Optional[list[int]] = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True     # nbinfer's detokenizer always joins tokens as HF does
    no_stop_trim: bool = False
    regex: Optional[str] = None
    json_schema: Optional[str] = None
    ebnf: Optional[str] = None                      # refused
    structural_tag: Optional[str] = None            # refused
    n: int = 1
    logit_bias: Optional[dict[str, float]] = None   # refused when not empty
    sampling_seed: Optional[int] = None
    custom_params: Optional[dict[str, Any]] = None  # ignored (SGLang's custom logit processors)
    stream_interval: Optional[int] = None           # ignored: nbinfer streams every delta


class GenerateRequest(ApiModel):
    text: Optional[Union[str, list[str]]] = None
    input_ids: Optional[Union[list[int], list[list[int]]]] = None
    sampling_params: Optional[Union[SglSamplingParams, list[SglSamplingParams]]] = None
    rid: Optional[Union[str, list[str]]] = None
    return_logprob: FlagPerPrompt = None
    logprob_start_len: MaybePerPrompt = None
    top_logprobs_num: MaybePerPrompt = None
    return_text_in_logprobs: FlagPerPrompt = None
    stream: bool = False
    # refused when given: nbinfer serves text models without LoRA or custom processors
    image_data: Optional[Any] = None
    video_data: Optional[Any] = None
    audio_data: Optional[Any] = None
    input_embeds: Optional[Any] = None
    lora_path: Optional[Any] = None
    custom_logit_processor: Optional[Any] = None
    token_ids_logprob: Optional[Any] = None
