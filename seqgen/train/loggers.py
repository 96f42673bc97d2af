"""Loggers are callbacks: ``on_log`` receives each record that belongs in a run's log (every
evaluation, and a training-loss point every hundredth of the budget: ``seqgen.records``).
``MetricsLog`` appends them to ``metrics.jsonl``; ``TensorBoardLog`` writes the same values as
TensorBoard scalars through tensorboardX (no TensorFlow, no ``tensorboard`` package at training
time). Only rank 0 gets loggers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

from seqgen.errors import ConfigError, FileWriteError, MissingExtraError
from seqgen.records import EvalRecord, StartInfo, StepRecord
from seqgen.runs import METRICS

LOGGERS = ("tensorboard",)  # what --log adds to metrics.jsonl
TENSORBOARD_DIR = "tensorboard"


class Callback(Protocol):
    """Any of these methods may be left out."""

    def on_start(self, info: StartInfo) -> None: ...
    def on_step(self, record: StepRecord) -> None: ...  # every step
    def on_eval(self, record: EvalRecord) -> None: ...  # every evaluation
    def on_log(self, record: StepRecord) -> None: ...  # the records a run's log keeps
    def on_end(self) -> None: ...


class Callbacks:
    """Several callbacks as one."""

    def __init__(self, *callbacks):
        self.callbacks = [c for c in callbacks if c is not None]

    def _call(self, name: str, *args) -> None:
        for c in self.callbacks:
            method = getattr(c, name, None)
            if method is not None:
                method(*args)

    def on_start(self, info: StartInfo) -> None:
        self._call("on_start", info)

    def on_step(self, record: StepRecord) -> None:
        self._call("on_step", record)

    def on_eval(self, record: EvalRecord) -> None:
        self._call("on_eval", record)

    def on_log(self, record: StepRecord) -> None:
        self._call("on_log", record)

    def on_end(self) -> None:
        self._call("on_end")


class MetricsLog:
    """``metrics.jsonl``: an append-only log, one record a line (a torn last line is skipped by readers)."""

    def __init__(self, out: Path):
        self.path = Path(out) / METRICS

    def on_log(self, record: StepRecord) -> None:
        try:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(record.to_json()) + "\n")
        except OSError as e:
            raise FileWriteError(f"cannot write {self.path}: {e.strerror or e}") from None


class TensorBoardLog:
    """TensorBoard scalars in ``<run>/tensorboard/``: train/loss and train/lr at every logged
    point, val/loss and val/bits at every evaluation, by step."""

    def __init__(self, out: Path):
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise MissingExtraError("--log tensorboard needs tensorboardX: pip install 'seqgen[tensorboard]'") from None
        self.writer = SummaryWriter(logdir=str(Path(out) / TENSORBOARD_DIR), flush_secs=10)

    def on_log(self, record: StepRecord) -> None:
        w, step = self.writer, record.step
        w.add_scalar("train/loss", record.loss, step, walltime=record.time)
        w.add_scalar("train/lr", record.lr, step, walltime=record.time)
        if isinstance(record, EvalRecord):
            w.add_scalar("val/loss", record.val_loss, step, walltime=record.time)
            w.add_scalar("val/bits", record.val_bits, step, walltime=record.time)

    def on_end(self) -> None:
        self.writer.close()


def loggers(names: str | None, out: Path) -> list:
    """metrics.jsonl always, and what ``--log`` names (comma-separated)."""
    wanted = [n.strip() for n in (names or "").split(",") if n.strip()]
    unknown = [n for n in wanted if n not in LOGGERS]
    if unknown:
        raise ConfigError(f"unknown --log {', '.join(unknown)}; expected {', '.join(LOGGERS)}")
    return [MetricsLog(out)] + ([TensorBoardLog(out)] if "tensorboard" in wanted else [])
