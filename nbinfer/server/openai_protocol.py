"""Request bodies of the OpenAI-compatible API, with vLLM's extra fields (pydantic, strict types).

Unknown fields are accepted and ignored, as vLLM does (clients send vendor fields freely); known
fields that would change the output and that nbinfer cannot honour are refused by name in
openai_params.py, never silently dropped.
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field


class ApiModel(BaseModel):
    # strict: "0.5" is not a number and 1 is not a bool; no NaN / Infinity (json.loads accepts them)
    model_config = ConfigDict(strict=True, extra="allow", allow_inf_nan=False, populate_by_name=True)


class StreamOptions(ApiModel):
    include_usage: Optional[bool] = True
    continuous_usage_stats: Optional[bool] = False


class StructuredOutputs(ApiModel):
    """vLLM's `structured_outputs`: exactly one of these."""
    regex: Optional[str] = None
    json_: Optional[Union[dict, str]] = Field(default=None, alias="json")
    choice: Optional[list[str]] = None
    json_object: Optional[bool] = None
    grammar: Optional[str] = None           # refused: no EBNF grammars in nbinfer
    structural_tag: Optional[str] = None    # refused


class JsonSchemaFormat(ApiModel):
    name: Optional[str] = None
    description: Optional[str] = None
    schema_: Optional[dict] = Field(default=None, alias="schema")
    strict: Optional[bool] = None


class ResponseFormat(ApiModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaFormat] = None


class SamplingFields(ApiModel):
    """Fields both /v1/completions and /v1/chat/completions take (OpenAI's, then vLLM's extras).
    None means "not given": the model's generation_config defaults apply, as in vLLM."""
    model: Optional[str] = None
    n: int = 1
    best_of: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    stop: Optional[Union[str, list[str]]] = None
    seed: Optional[int] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, float]] = None
    user: Optional[str] = None
    response_format: Optional[ResponseFormat] = None
    # vLLM's extras
    top_k: Optional[int] = None
    min_p: Optional[float] = None
    repetition_penalty: Optional[float] = None
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: Optional[list[int]] = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    prompt_logprobs: Optional[int] = None
    structured_outputs: Optional[StructuredOutputs] = None
    guided_regex: Optional[str] = None                    # vLLM < 0.11 names of structured_outputs
    guided_json: Optional[Union[dict, str]] = None
    guided_choice: Optional[list[str]] = None
    request_id: Optional[str] = None
    return_token_ids: bool = False                # vLLM: choices carry prompt_token_ids and token_ids
    return_tokens_as_token_ids: bool = False      # vLLM: logprob tokens as "token_id:123"


class CompletionRequest(SamplingFields):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    max_tokens: Optional[int] = 16
    echo: bool = False
    logprobs: Optional[int] = None
    suffix: Optional[str] = None
    add_special_tokens: bool = True


class TextPart(ApiModel):
    type: Literal["text"]
    text: str


class ChatMessage(ApiModel):
    role: str
    content: Optional[Union[str, list[TextPart]]] = None
    name: Optional[str] = None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage]
    max_tokens: Optional[int] = None
    max_completion_tokens: Optional[int] = None
    logprobs: bool = False
    top_logprobs: Optional[int] = None
    tools: Optional[list[Any]] = None
    tool_choice: Optional[Union[str, dict]] = None
    add_generation_prompt: bool = True
    continue_final_message: bool = False
    chat_template: Optional[str] = None
    echo: bool = False


class TokenizeRequest(ApiModel):
    model: Optional[str] = None
    prompt: Optional[str] = None
    messages: Optional[list[ChatMessage]] = None
    add_special_tokens: bool = True
    add_generation_prompt: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(ApiModel):
    model: Optional[str] = None
    tokens: list[int]
