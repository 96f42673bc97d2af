"""``open_generator``: a RUN argument (run folder, checkpoint or ONNX bundle) opened for sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from seqgen.device import GENERATE_DEVICE
from seqgen.engines.base import Generator
from seqgen.errors import ConfigError
from seqgen.runs import locate


def open_generator(path: Path | str | None, device: str = GENERATE_DEVICE,
                   which: Literal["best", "last"] = "best", threads: int | None = None) -> Generator:
    """Open what ``path`` names (``seqgen.runs.locate``; None: the most recent run) with the
    engine it needs: onnxruntime for a bundle (``threads`` go to its session options, torch is
    never imported), PyTorch for a checkpoint (``threads`` set torch's CPU threads)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1, got {threads}")
    found = locate(path, which)
    if found.kind == "bundle":
        from seqgen.engines.onnx_engine import open_bundle

        return open_bundle(found.path, threads=threads)
    from seqgen.engines.torch_engine import open_torch

    return open_torch(found.path, device=device, threads=threads)
