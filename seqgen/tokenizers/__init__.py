"""Tokenizers turn a corpus into integer ids and back. Each has a JSON-able config.

Every tokenizer reserves four sentinel ids for fill-in-the-middle training
(``<pre>``, ``<suf>``, ``<mid>``, ``<eot>``), so a run can learn infilling
whatever its corpus. ``Tokenizer`` (``seqgen.tokenizers.base``) is the interface.
"""

from __future__ import annotations

from typing import Any

from seqgen.errors import CheckpointError
from seqgen.tokenizers.base import Tokenizer
from seqgen.tokenizers.char import SPECIALS, CharTokenizer

__all__ = ["SPECIALS", "CharTokenizer", "Tokenizer", "tokenizer_from_dict"]


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from the plain data stored in a checkpoint or bundle."""
    kind = d.get("type")
    if kind == "char":
        return CharTokenizer.from_dict(d)
    if kind == "midi":
        from seqgen.tokenizers.midi import MidiTokenizer

        return MidiTokenizer.from_dict(d)
    raise CheckpointError(f"unknown tokenizer type {kind!r}; expected 'char' or 'midi'")
