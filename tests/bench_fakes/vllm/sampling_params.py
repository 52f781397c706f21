import enum


class RequestOutputKind(enum.Enum):
    CUMULATIVE = 0
    DELTA = 1
    FINAL_ONLY = 2


class SamplingParams:
    def __init__(self, temperature, max_tokens, ignore_eos, output_kind):
        assert temperature == 0.0 and ignore_eos and output_kind is RequestOutputKind.DELTA
        self.max_tokens = max_tokens
