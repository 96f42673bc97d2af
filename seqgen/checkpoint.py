"""Checkpoints hold everything needed to use them: weights, model/tokenizer/train configs as
plain data, step, best validation loss, optimizer state. They load with
``torch.load(weights_only=True)`` and are written to a temp file, then renamed.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from seqgen import __version__
from seqgen.config import TrainConfig
from seqgen.errors import CheckpointError
from seqgen.models import SeqModel, build_model, config_from_dict
from seqgen.tokenizers import tokenizer_from_dict

FORMAT = 1
LAST, BEST = "last.pt", "best.pt"


@dataclass
class Checkpoint:
    model: SeqModel
    tokenizer: Any
    train: TrainConfig
    step: int = 0
    elapsed: float = 0.0
    best_val_loss: float | None = None
    optimizer: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_payload(self) -> dict:
        return {
            "format": FORMAT,
            "seqgen_version": __version__,
            "model_config": self.model.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "train_config": self.train.to_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "best_val_loss": self.best_val_loss,
            "weights": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer,
            "extra": self.extra,
        }


def save(ckpt: Checkpoint, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(ckpt.to_payload(), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_payload(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({first[:120]})") from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(f"{path} is not a seqgen checkpoint")
    if payload["format"] > FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {payload['format']} (from seqgen "
            f"{payload.get('seqgen_version', '?')}); this seqgen ({__version__}) reads format {FORMAT}: upgrade seqgen"
        )
    return payload


def load(path: Path, device: str | torch.device = "cpu") -> Checkpoint:
    payload = read_payload(path)
    try:
        config = config_from_dict(payload["model_config"])
        model = build_model(config)
        model.load_state_dict(payload["weights"])
        ckpt = Checkpoint(
            model=model.to(device),
            tokenizer=tokenizer_from_dict(payload["tokenizer"]),
            train=TrainConfig.from_dict(payload["train_config"]),
            step=int(payload.get("step", 0)),
            elapsed=float(payload.get("elapsed", 0.0)),
            best_val_loss=payload.get("best_val_loss"),
            optimizer=payload.get("optimizer"),
            extra=payload.get("extra") or {},
        )
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} is incomplete or inconsistent: {str(e).splitlines()[0][:160]}") from None
    ckpt.model.eval()
    return ckpt
