"""The one model interface every seqgen model implements.

``forward(ids, state=None) -> (logits, state)``: ids (B, T) int64, logits (B, T, V).
The state is a tuple of tensors (hidden state, attention memory or KV cache). Running a
window in one call and running it one token at a time, carrying the state, give the same
logits; trainer, sampler, evaluator and exporter never ask which model they hold.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
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

    def forward(self, ids: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

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


def window_mask(t: int, s: int, window: int, device) -> torch.Tensor:
    """(T, S+T) bool: query i (after S cached keys) sees key j when it is causal and in the window."""
    q = torch.arange(t, device=device)[:, None] + s
    k = torch.arange(s + t, device=device)[None, :]
    return (k <= q) & (k > q - window)
