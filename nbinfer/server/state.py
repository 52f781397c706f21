"""What the routes share: the engine being served and what is derived from it once."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from .constraints import ConstraintBuilder
from .errors import ApiError
from .metrics import ServerMetrics
from .params import model_defaults


@dataclass
class ServerState:
    llm: object                          # nbinfer.LLM
    model_name: str                      # the id clients send as "model"
    model_path: str                      # what SGLang's /get_model_info reports
    constraints: ConstraintBuilder = None
    metrics: ServerMetrics = None
    defaults: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    @classmethod
    def for_llm(cls, llm, model_name: str | None = None) -> "ServerState":
        cfg = llm.config
        path = str(getattr(llm.engine, "path", None) or cfg.model or "default")
        name = model_name or (cfg.model if cfg.model else "default")
        return cls(llm=llm, model_name=str(name), model_path=path, constraints=ConstraintBuilder(llm),
                   metrics=ServerMetrics(llm, str(name)), defaults=model_defaults(llm))

    def check_model(self, requested: str | None) -> None:
        if requested is not None and requested not in (self.model_name, self.model_path):
            raise ApiError(f"The model `{requested}` does not exist; this server serves `{self.model_name}`",
                           "model", 404)

    @property
    def max_model_len(self) -> int:
        return self.llm.max_model_len

    @property
    def tokenizer(self):
        return self.llm.tokenizer
