"""Where torch runs and on how many CPU threads: the one resolver every command uses.

Defaults by command, and why they differ:
- ``train`` and ``eval`` default to ``auto`` (CUDA when present) and torch's own thread count:
  they run large batches, where a GPU and every core help.
- ``sample``, ``infill`` and ``compose`` default to the CPU with one thread
  (``GENERATE_DEVICE``, ``GENERATE_THREADS``): generation runs one token per step at batch 1,
  a few hundred tiny operators, where thread hand-offs and GPU launches cost more than they
  save (measured on two cores: the default LSTM samples 1,345 tokens/s on one thread).
Torch is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from seqgen.errors import ConfigError

if TYPE_CHECKING:
    import torch

TRAIN_DEVICE = "auto"
GENERATE_DEVICE = "cpu"
GENERATE_THREADS = 1


def resolve_device(name: str) -> "torch.device":
    """``auto`` -> CUDA when present, else CPU; ``cpu``, ``cuda``, ``cuda:N`` checked."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; expected auto, cpu, cuda or cuda:N") from None


def set_threads(threads: int | None) -> None:
    """Set torch's CPU threads (None: leave torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)
