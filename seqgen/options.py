"""The sampling options of one request, as one value: ``SamplingOptions``.

Plain Python (no numpy), so the CLI can read its defaults while ``seqgen --help`` loads nothing
heavy; ``seqgen.sampling`` applies the options. A server takes one ``SamplingOptions`` per
request (``check()`` raises one ``ConfigError`` line for a value out of range).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional

from seqgen.config import DEFAULT_TEMPERATURE
from seqgen.errors import ConfigError

MIN_PLAIN_TEMPERATURE = 1e-2  # the lowest temperature ``SamplingOptions.temperature_only`` draws with
DEFAULT_REPEAT_WINDOW = 64  # tokens the repetition penalty looks back over (llama.cpp's default)


def _real(x: Any) -> bool:
    # numbers.Real takes numpy scalars too; bool is refused (True is not a temperature)
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def _whole(x: Any) -> bool:
    return _real(x) and int(x) == x


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is drawn. Every filter but the temperature is off by default.

    - ``temperature``: 0 is greedy (argmax, no division).
    - ``top_k``: keep the k most likely tokens; ``top_p``: the smallest set whose mass reaches p.
    - ``min_p``: keep tokens whose probability is at least ``min_p`` times the top token's
      (after temperature); 0 or None is off.
    - ``repetition_penalty``: a token seen in the last ``repeat_window`` tokens (prompt included)
      has its probability divided by this (its logit lowered by log(penalty)); 1 is off.
    - ``no_repeat_ngram``: a token that would repeat an n-gram of this many tokens already in the
      text is never drawn; 0 or None is off.
    Whitespace and structure tokens (the tokenizer's, see ``seqgen.sampling.exempt_ids``) are
    exempt from both guards.
    """

    temperature: float = DEFAULT_TEMPERATURE
    top_k: Optional[int] = None
    top_p: Optional[float] = None
    min_p: Optional[float] = None
    repetition_penalty: float = 1.0
    repeat_window: int = DEFAULT_REPEAT_WINDOW
    no_repeat_ngram: Optional[int] = None

    def check(self) -> "SamplingOptions":
        t = self.temperature
        if not (_real(t) and t >= 0):
            raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {t}")
        if self.top_k is not None and not (_whole(self.top_k) and self.top_k >= 1):
            raise ConfigError(f"top-k must be an integer >= 1, got {self.top_k}")
        if self.top_p is not None and not (_real(self.top_p) and 0.0 < self.top_p <= 1.0):
            raise ConfigError(f"top-p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not (_real(self.min_p) and 0.0 <= self.min_p <= 1.0):
            raise ConfigError(f"min-p must be in [0, 1] (0 = off), got {self.min_p}")
        if not (_real(self.repetition_penalty) and 1.0 <= self.repetition_penalty <= 100.0):
            raise ConfigError(f"repetition-penalty must be in [1, 100] (1 = off), got {self.repetition_penalty}")
        if not (_whole(self.repeat_window) and self.repeat_window >= 1):
            raise ConfigError(f"repeat-window must be an integer >= 1, got {self.repeat_window}")
        if self.no_repeat_ngram is not None and not (_whole(self.no_repeat_ngram) and self.no_repeat_ngram >= 0):
            raise ConfigError(f"no-repeat-ngram must be an integer >= 1 (0 = off), got {self.no_repeat_ngram}")
        return self

    @property
    def temperature_only(self) -> bool:
        """Whether the draw is the temperature alone (no top-k, top-p or min-p, not greedy): the
        shortest path of ``seqgen.sampling.pick``, and what an engine's sampling loop draws. Below
        ``MIN_PLAIN_TEMPERATURE`` the division may overflow, which only the full path silences."""
        return (self.temperature >= MIN_PLAIN_TEMPERATURE and self.top_k is None and self.top_p is None
                and not self.min_p)

    @property
    def guarded(self) -> bool:
        """Whether a repetition guard is on (the sampler then keeps each row's history)."""
        return self.repetition_penalty > 1.0 or bool(self.no_repeat_ngram)

    def replace(self, **changes: Any) -> "SamplingOptions":
        """A checked copy with ``changes`` (``/temp 0.5`` in the interactive loop, a request's fields)."""
        return dataclasses.replace(self, **changes).check()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SamplingOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown sampling option(s): {', '.join(unknown)}; expected {', '.join(sorted(names))}")
        return cls(**d).check()
