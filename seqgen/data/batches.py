"""Batches for the trainer: random windows, or truncated-BPTT streams."""

from __future__ import annotations

import numpy as np


def random_windows(tokens: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, length + 1) int64 windows starting at random offsets."""
    starts = rng.integers(0, len(tokens) - length, size=batch)
    index = starts[:, None] + np.arange(length + 1)[None, :]
    return np.asarray(tokens[index], dtype=np.int64)

class StreamBatcher:
    """Truncated-BPTT batches: row i reads its own stretch of the corpus, window after window,
    so the hidden state can be carried from one window to the next (char-rnn's stateful training).

    ``next()`` returns the (batch, length + 1) windows and a (batch,) bool mask of rows that
    started over (their carried state must be reset).
    """

    def __init__(self, tokens: np.ndarray, batch: int, length: int, rng: np.random.Generator):
        self.tokens, self.batch, self.length, self.rng = tokens, batch, length, rng
        self.stride = max(length + 1, (len(tokens) - 1) // batch)
        self.pos = self._starts()
        self.used = np.zeros(batch, dtype=np.int64)

    def _starts(self) -> np.ndarray:
        shift = int(self.rng.integers(0, self.stride))
        return (np.arange(self.batch) * self.stride + shift) % max(1, len(self.tokens) - self.length - 1)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        reset = (self.pos + self.length + 1 > len(self.tokens)) | (self.used + self.length > self.stride)
        if reset.any():
            fresh = self.rng.integers(0, len(self.tokens) - self.length - 1, size=int(reset.sum()))
            self.pos[reset] = fresh
            self.used[reset] = 0
        index = self.pos[:, None] + np.arange(self.length + 1)[None, :]
        x = np.asarray(self.tokens[index], dtype=np.int64)
        self.pos += self.length
        self.used += self.length
        return x, reset

    def state_dict(self) -> dict:
        return {"pos": self.pos.tolist(), "used": self.used.tolist()}

    def load_state_dict(self, d: dict) -> None:
        """Continue from a saved cursor (a resumed run reads the windows the run would have read)."""
        pos, used = np.asarray(d["pos"], dtype=np.int64), np.asarray(d["used"], dtype=np.int64)
        if pos.shape != self.pos.shape or used.shape != self.used.shape:
            return  # saved for another batch size: the fresh cursor stands
        self.pos, self.used = pos, used
