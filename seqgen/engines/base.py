"""What every engine hands the sampler: a ``Generator``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seqgen.sampling import Engine
from seqgen.tokenizers import Tokenizer


@dataclass
class Generator:
    engine: Engine  # start(batch) and advance(ids, state) -> (last logits (B, V), state)
    tokenizer: Tokenizer
    model_type: str
    objective: str
    source: Path | None
    info: dict = field(default_factory=dict)

    @property
    def knows_infill(self) -> bool:
        return self.objective in ("infill", "mixed")
