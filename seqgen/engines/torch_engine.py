"""The PyTorch step engine: a model with its carried state (hidden state or KV cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from seqgen import checkpoint as ckpt_io
from seqgen.device import GENERATE_DEVICE, resolve_device, set_threads
from seqgen.engines.base import Generator
from seqgen.models import SeqModel


# A recurrent model's call of at most this many ids (B x T, with T <= SMALL_T) runs faster on the
# CPU with oneDNN off: PyTorch's oneDNN LSTM costs about 0.3 ms more per call (measured: default
# LSTM, one thread, a step 180-190 us without it against 480-510 with it; oneDNN wins from 16
# ids of one row or 8 ids of 16 rows on).
SMALL_IDS, SMALL_T = 64, 8


class TorchEngine:
    """``start(batch)`` -> initial state (None: the model's own); ``advance(ids, state)`` -> (last
    logits (B, V), state). For a model whose state has a fixed size (the recurrent ones),
    ``stack`` and ``select`` join and split rows, so the server steps many rows in one call."""

    def __init__(self, model: SeqModel, device: torch.device | str = "cpu"):
        self.model = model.eval()
        self.device = torch.device(device)
        self.stackable = bool(model.fixed_state)
        self._small_native = bool(model.fixed_state) and self.device.type == "cpu"

    def start(self, batch: int):
        return None

    def stack(self, states: list[tuple]) -> tuple:
        """One state of the rows of ``states`` (each a state of any batch), in order."""
        return tuple(torch.cat([st[i] for st in states], dim=axis)
                     for i, axis in enumerate(self.model.state_batch_axes))

    def select(self, state: tuple, rows: list[int]) -> tuple | None:
        """The state of ``rows`` alone (None for no rows)."""
        if not rows:
            return None
        index = torch.as_tensor(rows, device=self.device)
        return tuple(s.index_select(axis, index) for s, axis in zip(state, self.model.state_batch_axes))

    def _run(self, ids: np.ndarray, state):
        x = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=self.device)
        if not (self._small_native and x.shape[1] <= SMALL_T and x.numel() <= SMALL_IDS):
            return self.model(x, state)
        was = torch.backends.mkldnn.enabled
        torch.backends.mkldnn.enabled = False
        try:
            return self.model(x, state)
        finally:
            torch.backends.mkldnn.enabled = was

    @torch.inference_mode()
    def advance(self, ids: np.ndarray, state):
        logits, state = self._run(ids, state)  # (B, T, V)
        return logits[:, -1].float().cpu().numpy(), state

    @torch.inference_mode()
    def forward(self, ids: np.ndarray, state):
        """All logits (B, T, V) for ``ids`` (B, T), and the new state."""
        logits, state = self._run(ids, state)
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
