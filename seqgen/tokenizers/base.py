"""What every tokenizer offers: the one interface the data, training, sampling and export code
relies on. ``kind`` says what it reads: ``"text"`` (characters; ``encode`` takes a str and
``decode`` returns one) or ``"music"`` (MIDI events; ``encode`` takes a ``Piece`` and
``decode`` returns one)."""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Tokenizer(Protocol):
    kind: Literal["text", "music"]

    @property
    def vocab_size(self) -> int: ...

    # Sentinels of fill-in-the-middle (every tokenizer reserves them).
    @property
    def pre_id(self) -> int: ...

    @property
    def suf_id(self) -> int: ...

    @property
    def mid_id(self) -> int: ...

    @property
    def eot_id(self) -> int: ...

    def encode(self, source: Any) -> np.ndarray: ...

    def decode(self, ids: Any) -> Any: ...

    def to_dict(self) -> dict[str, Any]: ...

    def augmentation(self, train_tokens: np.ndarray, transpose: tuple[int, int] | None) -> Any:
        """A function ``(rows, rng) -> rows`` that augments training batches (music: transposition
        within the corpus's pitch range), or None."""
        ...

    def output_ids(self, train_tokens: np.ndarray, transpose: tuple[int, int] | None) -> np.ndarray | None:
        """Every id a training batch can hold (``train_tokens``' own, what the augmentation makes
        of them, the sentinels), or None where that is the whole vocabulary: the model's output
        layer may score the rest together (``seqgen.models.base.VocabHead``)."""
        ...
