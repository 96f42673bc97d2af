"""Step engines: run a model one call at a time, state carried, logits out as numpy.

``open_generator(path)`` takes a run folder, a checkpoint file or an ONNX bundle folder and
returns a ``Generator``: the engine plus the tokenizer and what the model was trained for.
Importing this package loads neither torch nor onnxruntime; each engine imports its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLE_FILE = "seqgen.json"


@dataclass
class Generator:
    engine: Any  # has start(batch) and advance(ids, state) -> (last logits (B, V), state)
    tokenizer: Any
    model_type: str
    objective: str
    source: Path
    info: dict = field(default_factory=dict)

    @property
    def knows_infill(self) -> bool:
        return self.objective in ("infill", "mixed")


def is_bundle(path: Path) -> bool:
    return Path(path).is_dir() and (Path(path) / BUNDLE_FILE).exists()


def open_generator(path: Path | None, device: str = "auto", which: str = "best") -> Generator:
    """Open a run folder, checkpoint or ONNX bundle for sampling (None: the most recent run)."""
    if path is not None and is_bundle(Path(path)):
        from seqgen.engines.onnx_engine import open_bundle

        return open_bundle(path)
    from seqgen.engines.torch_engine import open_checkpoint
    from seqgen.runs import checkpoint_path

    return open_checkpoint(checkpoint_path(path, which), device=device)

