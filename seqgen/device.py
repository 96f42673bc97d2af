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

import os
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


BF16_ENV = "SEQGEN_CPU_BF16"  # "0" or "1" forces the check below (tests take both paths on any CPU)


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs torch's bf16 kernels (oneDNN's bf16 LSTM and matmuls need AVX-512
    BW/VL/DQ or AMX; an AVX2-only CPU fails to create the primitive). torch asks the CPU itself."""
    forced = os.environ.get(BF16_ENV)
    if forced in ("0", "1"):
        return forced == "1"
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
