"""``TrainState``: everything the training loop changes, in one object, saved whole in a
checkpoint and restored whole on ``--resume``, so a resumed run is the same run.

It is plain data plus tensors (``torch.load(weights_only=True)`` reads it back): the step and
time, the best validation loss and its step, the evaluations since then, the moving-average
training loss, the cursors of the next evaluation and training-curve point, the batcher's
cursor, the numpy and torch (and CUDA) random states, the carried recurrent state of the
stream rows, and the optimizer and gradient-scaler states. This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

@dataclass
class TrainState:
    step: int = 0
    elapsed: float = 0.0  # seconds of training, across resumes
    best: float | None = None  # best validation loss so far
    best_step: int | None = None
    since_best: int = 0  # evaluations since the best one (for --patience)
    loss_ema: float | None = None  # moving average of the training loss
    val: float | None = None  # the last validation loss
    next_eval: float | None = None  # share of the budget at which the next evaluation comes
    next_point: float | None = None  # ... and the next training-curve point of metrics.jsonl
    batcher: dict | None = None  # StreamBatcher.state_dict()
    numpy_rng: dict | None = None  # numpy Generator.bit_generator.state
    torch_rng: Any = None  # torch.get_rng_state()
    cuda_rng: list | None = None  # torch.cuda.get_rng_state_all()
    carried: list | None = None  # the recurrent state of the stream rows (tensors), or None
    optimizer: dict | None = None
    scaler: dict | None = None

    def to_payload(self) -> dict[str, Any]:
        # not dataclasses.asdict: it would deep-copy the tensors and the optimizer state
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_payload(cls, d: dict[str, Any] | None, legacy: dict[str, Any] | None = None) -> "TrainState":
        """From a checkpoint's ``state``; a checkpoint from before it had one gives its step,
        time, best loss and optimizer (``legacy``: the old top-level keys) and the rest fresh."""
        if d is None:
            legacy = legacy or {}
            return cls(step=int(legacy.get("step", 0)), elapsed=float(legacy.get("elapsed", 0.0)),
                       best=legacy.get("best_val_loss"), optimizer=legacy.get("optimizer"))
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
