"""The plan of a run, decided before anything is built: the resolved configuration, the split,
what seqgen chose for the settings left to it (with the reasons, for the user) and the typed
flags that behaviour reads. It imports no torch: the training speed, when a choice needs it, comes
from the ``measure`` callable the caller hands in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from seqgen.config import TrainConfig, choose_settings
from seqgen.data.cache import TokenData
from seqgen.data.split import Split, run_split
from seqgen.errors import ConfigError, CorpusError
from seqgen.models import REGISTRY
from seqgen.objectives import fim_rows


@dataclass
class Plan:
    cfg: TrainConfig  # resolved: what the run trains with
    parts: Split
    choices: dict[str, str] = field(default_factory=dict)  # setting -> why seqgen chose it (printed, kept)
    stream: bool = False  # truncated BPTT: causal rows read the corpus in order, the state carried
    n_fim: int = 0  # rows of each batch that fill in a middle

    @property
    def train_tokens(self):
        return self.parts.train

    @property
    def val_tokens(self):
        return self.parts.val


def _check_length(data: TokenData, parts: Split, cfg: TrainConfig) -> None:
    need = cfg.window + 2
    if len(parts.train) < need or len(parts.val) < 2:
        raise CorpusError(f"corpus is too short: {len(data)} tokens, and training needs at least {need} in the "
                          "training split plus a validation split; use a smaller --window or a longer corpus")


def _choose(asked: TrainConfig, data: TokenData, parts: Split, device_type: str, world: int,
            measure: Callable[[TrainConfig, np.ndarray], float] | None) -> tuple[TrainConfig, dict[str, str]]:
    kind, n = data.tokenizer.kind, len(parts.train)
    cfg, why = choose_settings(asked, n, kind, None, device_type, world)
    if why and asked.time is not None and asked.steps is None and measure is not None:
        cfg, why = choose_settings(
            asked, n, kind, measure(cfg, parts.train)
        )  # the budget in tokens, at the measured speed
    why["split"] = f"{parts.mode}: " + (f"{len(parts.held_out)} whole documents held out, drawn from across the "
                                        "corpus" if parts.mode == "documents" else "the end of the stream")
    return cfg.replace(split=parts.mode, devices=world), why


def make_plan(asked: TrainConfig, data: TokenData, device_type: str = "cpu", world: int = 1,
              measure: Callable[[TrainConfig, np.ndarray], float] | None = None,
              choices: dict[str, str] | None = None) -> Plan:
    """The plan of a new run (``choices`` None), or of a resumed one: its config and choices as
    saved (nothing is chosen again)."""
    if asked.time is None and asked.steps is None:
        raise ConfigError("give a time budget or a number of steps")
    parts = run_split(data, asked)
    _check_length(data, parts, asked)
    if choices is None:
        cfg, choices = _choose(asked, data, parts, device_type, world, measure)
    else:
        cfg = asked.replace(devices=world)
    stateful = REGISTRY[cfg.model].model.stateful_training
    if cfg.batching == "stream" and not stateful:
        raise ConfigError(f"stream batching (truncated BPTT) is not available for {cfg.model}")
    n_fim = fim_rows(cfg.objective, cfg.fim_rate, cfg.batch)
    stream = stateful and cfg.batching in ("auto", "stream") and n_fim < cfg.batch
    return Plan(cfg, parts, choices, stream, n_fim)
