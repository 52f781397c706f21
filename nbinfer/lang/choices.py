"""How `select` decides among its choices, given each choice's token log-probs after the prefix.

Same call convention as SGLang's choices methods (keyword arguments, a ChoicesDecision back), so a
method written for SGLang plugs in unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class ChoicesDecision:
    decision: str
    meta_info: dict[str, Any] | None = None


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)     # the first of equal maxima


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("-inf")


class ChoicesSamplingMethod:
    requires_unconditional_logprobs = False

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs,
                 unconditional_token_logprobs=None) -> ChoicesDecision:
        raise NotImplementedError


class TokenLengthNormalized(ChoicesSamplingMethod):
    """The choice whose tokens have the highest mean log-prob (SGLang's default)."""

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs,
                 unconditional_token_logprobs=None) -> ChoicesDecision:
        best = _argmax(normalized_prompt_logprobs)
        return ChoicesDecision(choices[best], {"normalized_prompt_logprobs": normalized_prompt_logprobs,
                                               "input_token_logprobs": input_token_logprobs,
                                               "output_token_logprobs": output_token_logprobs})


class GreedyTokenSelection(ChoicesSamplingMethod):
    """Token by token: keep the choices with the best log-prob at each position; a choice that has
    run out of tokens continues with its own mean."""

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs,
                 unconditional_token_logprobs=None) -> ChoicesDecision:
        rows = [[t[0] for t in row] for row in input_token_logprobs]
        width = max((len(r) for r in rows), default=0)
        matrix = [r + [_mean(r)] * (width - len(r)) for r in rows]
        alive = list(range(len(choices)))
        for j in range(width):
            top = max(matrix[i][j] for i in alive)
            alive = [i for i in alive if matrix[i][j] == top]
            if len(alive) == 1:
                break
        return ChoicesDecision(choices[alive[0]], {"normalized_prompt_logprobs": normalized_prompt_logprobs,
                                                   "input_token_logprobs": input_token_logprobs,
                                                   "output_token_logprobs": output_token_logprobs,
                                                   "greedy_logprob_matrix": matrix})


class UnconditionalLikelihoodNormalized(ChoicesSamplingMethod):
    """Mean of (log p(token | prefix) - log p(token | nothing)): discounts choices that are likely
    anywhere, not because of the prompt."""
    requires_unconditional_logprobs = True

    def __call__(self, *, choices, normalized_prompt_logprobs, input_token_logprobs, output_token_logprobs,
                 unconditional_token_logprobs=None) -> ChoicesDecision:
        if unconditional_token_logprobs is None:
            raise ValueError("unconditional_likelihood_normalized needs unconditional token log-probs")
        scores = [_mean([a[0] - (b[0] or 0.0) for a, b in zip(cond, uncond)])
                  for cond, uncond in zip(input_token_logprobs, unconditional_token_logprobs)]
        return ChoicesDecision(choices[_argmax(scores)], {
            "normalized_prompt_logprobs": normalized_prompt_logprobs,
            "input_token_logprobs": input_token_logprobs, "output_token_logprobs": output_token_logprobs,
            "unconditional_token_logprobs": unconditional_token_logprobs,
            "normalized_unconditional_prompt_logprobs": scores})


token_length_normalized = TokenLengthNormalized()
greedy_token_selection = GreedyTokenSelection()
unconditional_likelihood_normalized = UnconditionalLikelihoodNormalized()
