"""Checkpoints hold everything needed to use them and to go on training: weights, the
model/tokenizer/train configs as plain data, the corpus they were trained on, what seqgen chose
and why, and the whole training state (``seqgen.train_state``: step, best loss, random states,
the batcher's cursor, the optimizer...). They load with ``torch.load(weights_only=True)`` and are
written to a temp file, then renamed.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from seqgen import __version__
from seqgen.config import MEMORIZED, TrainConfig
from seqgen.device import resolve_device
from seqgen.errors import CheckpointError, CorpusError
from seqgen.fileio import atomic_path
from seqgen.models import SeqModel, build_model, config_from_dict
from seqgen.runs import BEST, LAST, locate
from seqgen.tokenizers import Tokenizer, tokenizer_from_dict
from seqgen.train_state import TrainState

FORMAT = 1
__all__ = ["BEST", "LAST", "Checkpoint", "load", "open_checkpoint", "read_payload", "run_data", "save"]


@dataclass
class Checkpoint:
    model: SeqModel
    tokenizer: Tokenizer
    train: TrainConfig
    state: TrainState = field(default_factory=TrainState)
    corpus: str | None = None  # what the run was trained on (a CORPUS argument)
    encoding: str = "utf-8"  # of a text corpus
    choices: dict[str, str] | None = None  # what seqgen chose for the settings left to it, and why
    has_state: bool = True  # False: from before the training state was saved whole
    path: Path | None = None  # where it was loaded from (not saved)

    @property
    def step(self) -> int:
        return self.state.step

    @property
    def elapsed(self) -> float:
        return self.state.elapsed

    @property
    def best_val_loss(self) -> float | None:
        return self.state.best

    def to_payload(self) -> dict:
        return {
            "format": FORMAT,
            "seqgen_version": __version__,
            "model_config": self.model.config.to_dict(),
            "tokenizer": self.tokenizer.to_dict(),
            "train_config": self.train.to_dict(),
            "step": self.step,  # also in the state: read by older seqgen versions and by tools
            "elapsed": self.elapsed,
            "best_val_loss": self.best_val_loss,
            "weights": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "state": self.state.to_payload(),
            # memorization_stop: the flag of seqgen before --stop-below, for it to read
            "plan": {"choices": self.choices, "memorization_stop": self.train.stop_below is not None},
            "extra": {"corpus": self.corpus, "encoding": self.encoding},
        }


def save(ckpt: Checkpoint, path: Path) -> None:
    """Write atomically (``seqgen.fileio``): a failed write leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save(ckpt.to_payload(), tmp)


def read_payload(path: Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only load failed" in str(e).lower() or "weights_only" in str(e):
            raise CheckpointError(
                f"checkpoint {path} holds objects other than tensors and plain data; seqgen does not load it "
                "because loading could run code"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_first(e)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_first(e)})") from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise CheckpointError(f"{path} is not a seqgen checkpoint")
    if payload["format"] > FORMAT:
        raise CheckpointError(
            f"checkpoint {path} has format {payload['format']} (from seqgen "
            f"{payload.get('seqgen_version', '?')}); this seqgen ({__version__}) reads format {FORMAT}: upgrade seqgen"
        )
    return payload


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:120]


def load(path: Path, device: str | torch.device = "cpu") -> Checkpoint:
    payload = read_payload(path)
    try:
        config = config_from_dict(payload["model_config"])
        model = build_model(config)
        model.load_state_dict(payload["weights"])
        extra, plan = payload.get("extra") or {}, payload.get("plan") or {}
        train = TrainConfig.from_dict(payload["train_config"])
        if plan.get("memorization_stop") and "stop_below" not in payload["train_config"]:
            train = train.replace(stop_below=MEMORIZED)  # a run from before --stop-below: its patience's guard
        ckpt = Checkpoint(
            model=model.to(device),
            tokenizer=tokenizer_from_dict(payload["tokenizer"]),
            train=train,
            state=TrainState.from_payload(payload.get("state"), legacy=payload),
            corpus=extra.get("corpus"),
            encoding=extra.get("encoding") or "utf-8",
            choices=plan.get("choices"),
            has_state="state" in payload,
            path=Path(path),
        )
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint {path} is incomplete or inconsistent: {str(e).splitlines()[0][:160]}"
        ) from None
    ckpt.model.eval()
    return ckpt


def open_checkpoint(run: Path | str | None, which: Literal["best", "last"] = "best", device: str = "cpu") -> Checkpoint:
    """The checkpoint a RUN argument names (``seqgen.runs.locate``), loaded on ``device``
    (``auto`` resolves to CUDA when present). An ONNX bundle is refused: it holds no weights
    to train, evaluate or export."""
    found = locate(run, which)
    if found.kind == "bundle":
        raise CheckpointError(f"{found.path} is an ONNX bundle; this command needs a run folder or checkpoint")
    return load(found.path, device=resolve_device(device))


def run_data(ckpt: Checkpoint, corpus: str | None = None, progress=None, report=None):
    """The run's corpus read with its tokenizer, and its split (``seqgen.data.split.run_split``):
    what ``seqgen eval`` and the export's loss check read. ``corpus`` overrides the recorded one."""
    from seqgen.data.load import load_corpus
    from seqgen.data.split import run_split

    spec = corpus or ckpt.corpus
    if not spec:
        raise CorpusError(f"{ckpt.path} does not name its corpus; pass --corpus")
    data = load_corpus(spec, encoding=ckpt.encoding, tokenizer=ckpt.tokenizer, progress=progress, report=report)
    return data, run_split(data, ckpt.train)
