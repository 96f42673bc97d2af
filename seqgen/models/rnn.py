"""Recurrent language models: Elman RNN (tanh), GRU and LSTM over character embeddings.

embedding -> multi-layer recurrent net -> dropout -> linear head. The state is the hidden
state ``h`` (and the cell ``c`` for the LSTM), each (layers, B, hidden). ``nn.LSTM`` uses the
gate order i|f|g|o; tests check it against a cell written from the gate equations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from seqgen.errors import ConfigError
from seqgen.models.base import ModelConfig, SeqModel, State, VocabHead, check_head_ids

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}

# Presets for two CPU cores: (layers, hidden, embedding).
@dataclass
class RecurrentConfig(ModelConfig):
    type: ClassVar[str] = "lstm"
    cell: str = "lstm"
    emb_dim: int = 64
    head_ids: list[int] | None = None  # the tokens the output layer scores apart (None: all; ``VocabHead``)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.head_ids = check_head_ids(self.head_ids, self.vocab_size)
        if self.cell not in CELLS:
            raise ConfigError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        if self.emb_dim < 1:
            raise ConfigError(f"emb_dim must be at least 1, got {self.emb_dim}")

    def to_dict(self):
        return {**super().to_dict(), "type": self.cell}


class RecurrentLM(SeqModel):
    stateful_training = True
    fixed_state = True  # (layers, B, dim) per tensor, whatever was read

    def __init__(self, config: RecurrentConfig):
        super().__init__()
        self.config = config
        self.state_names = ("h", "c") if config.cell == "lstm" else ("h",)
        self.state_batch_axes = (1,) * len(self.state_names)
        self.embed = nn.Embedding(config.vocab_size, config.emb_dim)
        extra = {"nonlinearity": "tanh"} if config.cell == "rnn" else {}
        self.rnn = CELLS[config.cell](
            config.emb_dim, config.dim, num_layers=config.layers, batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0, **extra,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = VocabHead(config.dim, config.vocab_size, config.head_ids)
        # PyTorch's default init. A forget-gate bias of 1 (Jozefowicz et al. 2015) measured worse
        # here: 1.575 against 1.535 nats after 2 minutes on tinyshakespeare.

    def init_state(self, batch: int, device="cpu") -> State:
        c = self.config
        z = torch.zeros(c.layers, batch, c.dim, device=device)
        return (z, z.clone()) if c.cell == "lstm" else (z,)

    def forward(self, ids: torch.Tensor, state: State | None = None,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        if ids.dim() != 2:
            raise ValueError(f"Expected ids to be 2D (batch, time), got {ids.dim()}D")
        x = self.drop(self.embed(ids))  # (B, T, E); dropout on the inputs and outputs, not the recurrence
        if state is None:
            state = self.init_state(ids.shape[0], ids.device)
        hx = state if self.config.cell == "lstm" else state[0]
        out, new = self.rnn(x, hx)  # (B, T, H)
        logits = self.scores(self.drop(out), targets)  # (B, T, V), or the loss of targets
        return logits, (tuple(new) if self.config.cell == "lstm" else (new,))
