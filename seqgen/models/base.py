"""The one model interface every seqgen model implements.

``forward(ids, state=None) -> (logits, state)``: ids (B, T) int64, logits (B, T, V).
The state is a tuple of tensors (hidden state, attention memory or KV cache). Running a
window in one call and running it one token at a time, carrying the state, give the same
logits; trainer, sampler, evaluator and exporter never ask which model they hold. Training
passes ``targets`` (B, T) too and gets their mean cross-entropy in place of the logits
(nanoGPT's ``forward(idx, targets)``), so an output layer that scores its tokens in rows
(``VocabHead``) need not spread them over the vocabulary first.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from seqgen.errors import ConfigError

State = tuple[torch.Tensor, ...]


@dataclass
class ModelConfig:
    """Fields every model has. Subclasses add their own and validate in ``__post_init__``."""

    type: ClassVar[str] = ""
    vocab_size: int = 0
    layers: int = 1
    dim: int = 256
    dropout: float = 0.0
    # Sentinel id that starts the middle in fill-in-the-middle sequences (-1: none).
    mid_id: int = -1

    def __post_init__(self) -> None:
        if self.vocab_size < 1:
            raise ConfigError(f"vocab_size must be at least 1, got {self.vocab_size}")
        if self.layers < 1:
            raise ConfigError(f"layers must be at least 1, got {self.layers}")
        if self.dim < 1:
            raise ConfigError(f"dim must be at least 1, got {self.dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class SeqModel(nn.Module):
    """Base class: subclasses implement ``forward`` and ``init_state``."""

    config: ModelConfig
    # Whether training may carry the state from one window to the next (truncated BPTT).
    stateful_training: ClassVar[bool] = False
    # Names of the state tensors, in order (used by export and by ``reset_rows``).
    state_names: ClassVar[tuple[str, ...]] = ()
    # Axis of the batch dimension in each state tensor.
    state_batch_axes: ClassVar[tuple[int, ...]] = ()
    # Whether every state tensor has a fixed size apart from its batch axis, so that rows that read
    # different numbers of tokens can share one state (stacked along those axes).
    fixed_state: ClassVar[bool] = False

    def forward(self, ids: torch.Tensor, state: State | None = None,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def scores(self, h: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """The output layer ``self.head`` on ``h`` (B, T, C): logits (B, T, V), or with ``targets``
        (B, T) their mean cross-entropy in nats, a scalar."""
        if targets is None:
            return self.head(h)
        if isinstance(self.head, VocabHead):
            return self.head.loss(h, targets)
        return mean_nll(self.head(h), targets)

    def init_state(self, batch: int, device: torch.device | str = "cpu") -> State:
        """The state before any token (zeros, or empty memories)."""
        raise NotImplementedError

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @staticmethod
    def detach_state(state: State) -> State:
        return tuple(s.detach() for s in state)

    def reset_rows(self, state: State, reset: torch.Tensor) -> State:
        """Zero the state of the rows where ``reset`` (B,) is true (stateful training only)."""
        out = []
        for s, axis in zip(state, self.state_batch_axes):
            shape = [1] * s.dim()
            shape[axis] = -1
            out.append(s * (~reset).to(s.dtype).view(shape))
        return tuple(out)


def mean_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``targets`` (B, T) under ``logits`` (B, T, V), in float32."""
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))


def check_head_ids(ids: list[int] | None, vocab_size: int) -> list[int] | None:
    """``ids`` as the sorted distinct ints a ``VocabHead`` scores, or a typed error."""
    if ids is None:
        return None
    ids = sorted({int(i) for i in ids})
    if not ids or ids[0] < 0 or ids[-1] >= vocab_size:
        raise ConfigError(f"head_ids must be ids in 0..{vocab_size - 1}, got {len(ids)} ids"
                          + (f" from {ids[0]} to {ids[-1]}" if ids else ""))
    return ids if len(ids) < vocab_size else None  # every token listed: a row per token


class VocabHead(nn.Linear):
    """The output layer: logits over the whole vocabulary, (..., dim) -> (..., V).

    ``ids`` None: an ``nn.Linear`` with a row per token. With ``ids`` (the tokens a run's
    training batches can hold; a music vocabulary has hundreds its corpus never uses: drums,
    instruments, pitches out of range), a row per listed token and one more that every other
    token shares, its logit less log(how many share it): the same softmax over the vocabulary,
    with unlisted tokens equally likely among themselves, at the cost of ``len(ids) + 1`` rows
    (the head is most of a small LSTM's step). The row order follows ``ids``; the index that
    spreads the rows over the vocabulary is rebuilt from them, not saved."""

    def __init__(self, dim: int, vocab_size: int, ids: list[int] | None = None):
        ids = check_head_ids(ids, vocab_size)
        super().__init__(dim, vocab_size if ids is None else len(ids) + 1)
        self.vocab_size = vocab_size
        index = offset = None
        if ids is not None:
            index = torch.full((vocab_size,), len(ids), dtype=torch.long)  # (V,): each token's row
            index[torch.as_tensor(ids)] = torch.arange(len(ids))
            rest = vocab_size - len(ids)
            offset = torch.where(index == len(ids), -math.log(max(rest, 1)), 0.0)  # (V,)
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("offset", offset, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = super().forward(x)  # (..., len(ids) + 1) or (..., V)
        if self.index is None:
            return rows
        return rows.index_select(-1, self.index) + self.offset  # (..., V)

    def loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy of ``targets`` (B, T) under ``forward(x)``, from the rows: the
        logsumexp over the vocabulary is the rows' own (the shared row stands for its tokens
        together), and a target off the list costs its share, log(how many share the row), more."""
        rows = super().forward(x)  # (B, T, U + 1) or (B, T, V)
        if self.index is None:
            return mean_nll(rows, targets)
        t = targets.reshape(-1)
        nll = F.cross_entropy(rows.float().reshape(-1, rows.shape[-1]), self.index[t], reduction="none")
        return (nll - self.offset[t]).mean()

    def full(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (V, dim), bias (V,)) of the plain linear layer that gives the same logits."""
        if self.index is None:
            return self.weight.detach().clone(), self.bias.detach().clone()
        return self.weight.detach()[self.index].clone(), (self.bias.detach()[self.index] + self.offset).clone()


def window_mask(t: int, s: int, window: int, device) -> torch.Tensor:
    """(T, S+T) bool: query i (after S cached keys) sees key j when it is causal and in the window."""
    q = torch.arange(t, device=device)[:, None] + s
    k = torch.arange(s + t, device=device)[None, :]
    return (k <= q) & (k > q - window)
