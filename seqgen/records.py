"""What a training reports, as types: the records its callbacks receive and ``metrics.jsonl``
holds, one JSON object a line. ``from_json`` is the one reader (``seqgen.history`` uses it).

- ``StepRecord`` (``"event": "train"``): the training loss (moving average) after a step, with
  the learning rate, elapsed training time, the share of the budget used and the speed; the
  log keeps about a hundred of them per run, for the curves between evaluations.
- ``EvalRecord`` (``"event": "eval"``): the same, plus the validation loss of that step, whether
  it is the best so far, and the best step and loss.
- ``StartInfo``: what the trainer hands ``on_start`` (not logged: config.json holds it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

LN2 = math.log(2)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class StepRecord:
    event: ClassVar[str] = "train"
    step: int
    loss: float  # training loss, moving average over steps (nats per token)
    lr: float
    elapsed: float  # seconds of training, across resumes
    progress: float  # share of the budget used, 0..1
    tokens_per_s: float
    time: float = 0.0  # unix time of the record

    def to_json(self) -> dict[str, Any]:
        return {"event": self.event, **dataclasses.asdict(self)}


@dataclass
class EvalRecord(StepRecord):
    event: ClassVar[str] = "eval"
    val_loss: float = math.nan
    best: bool = False  # the best validation loss so far
    best_step: int | None = None
    best_val_loss: float | None = None

    @property
    def val_bits(self) -> float:
        return self.val_loss / LN2

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "val_bits": self.val_bits}


def from_json(d: Any) -> StepRecord | EvalRecord | None:
    """A record from one parsed metrics line; None when it is not one (a damaged or foreign line).
    Lines from before the records had types read the same (their keys were these)."""
    if not isinstance(d, dict) or not _number(d.get("step")):
        return None
    is_eval = d.get("event") == "eval" or (d.get("event") is None and _number(d.get("val_loss")))
    if is_eval and not _number(d.get("val_loss")):
        return None
    if not is_eval and not (d.get("event") == "train" and _number(d.get("loss"))):
        return None
    cls = EvalRecord if is_eval else StepRecord
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        v = d.get(f.name)
        if f.name in ("step", "best_step"):
            values[f.name] = int(v) if _number(v) else (None if f.name == "best_step" else 0)
        elif f.name == "best":
            values[f.name] = bool(v)
        elif f.name == "best_val_loss":
            values[f.name] = float(v) if _number(v) else None
        else:
            values[f.name] = float(v) if _number(v) else math.nan
    return cls(**values)


@dataclass
class StartInfo:
    params: int
    device: str
    step: int  # 0, or the step a resumed run starts from
    train_tokens: int
    val_tokens: int
    stream: bool  # truncated BPTT (the state carried between windows)
    config: Any  # the resolved TrainConfig
    choices: dict[str, str] = field(default_factory=dict)  # what seqgen chose, and why
    notes: list[str] = field(default_factory=list)  # one line each (e.g. what an old checkpoint lacked)
