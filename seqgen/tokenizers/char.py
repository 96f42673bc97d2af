"""Character tokenizer: the vocabulary is the set of characters of the corpus."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqgen.errors import TokenizerError

# Sentinels for fill-in-the-middle (Bavarian et al. 2022), appended after the characters.
SPECIALS = ("<pre>", "<suf>", "<mid>", "<eot>")


@dataclass(eq=True)
class CharTokenizer:
    """Maps each character of ``chars`` to its index; sentinels follow the characters."""

    chars: str
    kind: str = field(default="text", compare=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise TokenizerError("character vocabulary has duplicates")
        if not self.chars:
            raise TokenizerError("character vocabulary is empty")
        self._index = {c: i for i, c in enumerate(self.chars)}
        self._codepoints = np.array([ord(c) for c in self.chars], dtype=np.int64)
        self._order = np.argsort(self._codepoints)

    # ---- vocabulary -------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.chars) + len(SPECIALS)

    def special_id(self, name: str) -> int:
        return len(self.chars) + SPECIALS.index(name)

    @property
    def pre_id(self) -> int:
        return self.special_id("<pre>")

    @property
    def suf_id(self) -> int:
        return self.special_id("<suf>")

    @property
    def mid_id(self) -> int:
        return self.special_id("<mid>")

    @property
    def eot_id(self) -> int:
        return self.special_id("<eot>")

    def default_prompt(self) -> str:
        """What sampling starts from when the user gives no prompt."""
        return "\n" if "\n" in self._index else self.chars[0]

    # ---- encoding ---------------------------------------------------------------------
    def unknown(self, text: str) -> list[str]:
        return sorted({c for c in text if c not in self._index})

    def encode(self, text: str) -> np.ndarray:
        """Text -> int64 ids. Raises TokenizerError naming characters outside the vocabulary."""
        if not text:
            return np.zeros(0, dtype=np.int64)
        # surrogatepass: a lone surrogate (undecodable bytes in argv) is a character to name, not a crash
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        pos = np.searchsorted(self._codepoints[self._order], cps)
        pos = np.clip(pos, 0, len(self.chars) - 1)
        ids = self._order[pos]
        bad = self._codepoints[ids] != cps
        if bad.any():
            missing = self.unknown(text)
            shown = ", ".join(repr(c) for c in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise TokenizerError(f"the model never saw these characters: {shown}{more}")
        return ids

    def decode(self, ids) -> str:
        """Ids -> text; sentinel ids are dropped."""
        n = len(self.chars)
        return "".join(self.chars[i] for i in np.asarray(ids, dtype=np.int64).tolist() if 0 <= i < n)

    def augmentation(self, train_tokens, transpose):
        """Text is trained as it is: no augmentation."""
        return None

    def output_ids(self, train_tokens, transpose):
        """None: the vocabulary is the corpus's own characters."""
        return None

    # ---- serialization ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "chars": self.chars, "specials": list(SPECIALS), "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CharTokenizer":
        return cls(chars=d["chars"], kind=d.get("kind", "text"))

    @classmethod
    def from_chars(cls, chars, kind: str = "text") -> "CharTokenizer":
        return cls(chars="".join(sorted(set(chars))), kind=kind)
