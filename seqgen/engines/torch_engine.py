"""The PyTorch step engine: a model with its carried state (hidden state or KV cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seqgen import checkpoint as ckpt_io
from seqgen.device import GENERATE_DEVICE, resolve_device, set_threads
from seqgen.engines.base import Generator
from seqgen.models import SeqModel


class TorchEngine:
    def __init__(self, model: SeqModel, device: torch.device | str = "cpu"):
        self.model = model.eval()
        self.device = torch.device(device)

    def start(self, batch: int):
        return None

    @torch.inference_mode()
    def advance(self, ids: np.ndarray, state):
        x = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.device)
        logits, state = self.model(x, state)  # (B, T, V)
        return logits[:, -1].float().cpu().numpy(), state

    @torch.inference_mode()
    def forward(self, ids: np.ndarray, state):
        """All logits (B, T, V) for ``ids`` (B, T), and the new state."""
        x = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.device)
        logits, state = self.model(x, state)
        return logits.float().cpu().numpy(), state


def open_torch(path: Path, device: str = GENERATE_DEVICE, threads: int | None = None) -> Generator:
    """A ``Generator`` over a checkpoint file's model, on ``threads`` CPU threads (None: torch's choice)."""
    set_threads(threads)
    dev = resolve_device(device)
    ckpt = ckpt_io.load(path, device=dev)
    return Generator(
        engine=TorchEngine(ckpt.model, dev),
        tokenizer=ckpt.tokenizer,
        model_type=ckpt.model.config.to_dict()["type"],
        objective=ckpt.train.objective,
        source=Path(path),
        info={"step": ckpt.step, "checkpoint": ckpt},
    )
