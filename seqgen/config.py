"""Training configuration: one dataclass that validates itself and round-trips through JSON.

It imports nothing heavy, so the CLI reads its defaults without loading torch.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from seqgen.errors import ConfigError

MODEL_TYPES = ("rnn", "gru", "lstm", "lstm-attn", "transformer")
SIZES = ("tiny", "small", "base")
OBJECTIVES = ("causal", "infill", "mixed")
BATCHING = ("auto", "stream", "random")


def parse_duration(text: str | None) -> float | None:
    """'90s', '3m', '1h30m', '45' (seconds) -> seconds."""
    if text is None:
        return None
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        value = float(s)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(h|m|min|s|sec)", s)
        if not parts or "".join(f"{a}{b}" for a, b in parts) != s.replace(" ", ""):
            raise ConfigError(f"cannot read duration {text!r}; expected e.g. 90s, 3m, 1h30m")
        scale = {"h": 3600, "m": 60, "min": 60, "s": 1, "sec": 1}
        value = sum(float(a) * scale[b] for a, b in parts)
    if value <= 0:
        raise ConfigError(f"duration must be positive, got {text!r}")
    return value


@dataclass
class TrainConfig:
    model: str = "lstm"
    size: str | None = None  # None: chosen from the model and the budget
    layers: int | None = None
    dim: int | None = None
    heads: int | None = None
    emb_dim: int | None = None
    attn_score: str = "general"
    objective: str = "mixed"
    fim_rate: float = 0.5
    batch: int | None = None  # None: chosen from the model and the budget
    window: int = 128
    batching: str = "auto"
    lr: float | None = None  # None: the model family's default
    min_lr_ratio: float = 0.05
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    dropout: float = 0.0
    time: float | None = None  # seconds of training (wall clock), or
    steps: int | None = None  # a number of optimizer steps (total, counting resumed ones)
    val_fraction: float = 0.1
    eval_every: float = 0.1  # share of the budget between evaluations
    eval_tokens: int = 16384  # validation tokens per evaluation during training
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    transpose: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        if isinstance(self.transpose, list):
            self.transpose = tuple(self.transpose)
        checks = [
            (self.model in MODEL_TYPES, f"model must be one of {', '.join(MODEL_TYPES)}, got {self.model!r}"),
            (self.size is None or self.size in SIZES, f"size must be one of {', '.join(SIZES)}, got {self.size!r}"),
            (self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"),
            (self.batching in BATCHING, f"batching must be one of {', '.join(BATCHING)}, got {self.batching!r}"),
            (0.0 <= self.fim_rate <= 1.0, f"fim-rate must be in [0, 1], got {self.fim_rate}"),
            (self.batch is None or self.batch >= 1, f"batch must be at least 1, got {self.batch}"),
            (self.window >= 8, f"window must be at least 8 tokens, got {self.window}"),
            (self.lr is None or self.lr > 0, f"lr must be positive, got {self.lr}"),
            (0.0 <= self.min_lr_ratio <= 1.0, f"min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (self.warmup >= 0, f"warmup must be >= 0, got {self.warmup}"),
            (self.grad_clip > 0, f"grad-clip must be positive, got {self.grad_clip}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.time is None or self.time > 0, f"time must be positive, got {self.time}"),
            (self.steps is None or self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            (0.0 < self.val_fraction < 0.5, f"val-fraction must be in (0, 0.5), got {self.val_fraction}"),
            (0.0 < self.eval_every <= 1.0, f"eval-every must be in (0, 1], got {self.eval_every}"),
            (self.eval_tokens >= 1, f"eval-tokens must be at least 1, got {self.eval_tokens}"),
            (self.threads is None or self.threads >= 1, f"threads must be at least 1, got {self.threads}"),
            (self.transpose[0] <= 0 <= self.transpose[1], f"transpose range must include 0, got {self.transpose}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.model == "transformer" and self.batching == "stream":
            raise ConfigError("stream batching (truncated BPTT) needs a recurrent model, not the transformer")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["transpose"] = list(self.transpose)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)
