"""Masked-completion objectives on token windows.

causal: mask the end and complete it (next-token prediction on the window as it is).

infill: fill-in-the-middle (Bavarian et al. 2022). The first ``k`` tokens of a window are cut
into prefix, middle and suffix and rearranged, with sentinels:

    PSM: <pre> prefix <suf> suffix <mid> middle <eot> rest
    SPM: <pre> <suf> suffix <mid> prefix middle <eot> rest

``rest`` is the text that followed the passage, so every example keeps the window's length
``L`` (the sentinels take 4 places). Per example, ``k`` is drawn uniformly from 8 to ``L - 4``
(so prefix and suffix range from empty to most of the window), the middle's length uniformly
from 1 to ``k // 2``, its start uniformly among the places it fits; PSM and SPM have equal
odds. The loss covers every position (prefix, suffix and rest included), as in the paper.

mixed: a share ``fim_rate`` of the rows of each batch is transformed, the rest stay causal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SENTINELS = 4


@dataclass(frozen=True)
class FimIds:
    pre: int
    suf: int
    mid: int
    eot: int

    @classmethod
    def of(cls, tokenizer) -> "FimIds":
        return cls(tokenizer.pre_id, tokenizer.suf_id, tokenizer.mid_id, tokenizer.eot_id)


def fim_rows(objective: str, fim_rate: float, batch: int) -> int:
    """How many rows of a batch are fill-in-the-middle examples."""
    if objective == "causal":
        return 0
    if objective == "infill":
        return batch
    return min(batch, int(round(batch * fim_rate)))


def split_points(n: int, rng: np.random.Generator) -> tuple[int, int]:
    """(start, end) of the middle in a window of n tokens."""
    span = int(rng.integers(1, max(1, n // 2) + 1))
    start = int(rng.integers(0, n - span + 1))
    return start, start + span


def psm(prefix, middle, suffix, ids: FimIds) -> np.ndarray:
    return np.concatenate((infill_prompt(prefix, suffix, ids), middle, [ids.eot])).astype(np.int64)


def spm(prefix, middle, suffix, ids: FimIds) -> np.ndarray:
    return np.concatenate(([ids.pre, ids.suf], suffix, [ids.mid], prefix, middle, [ids.eot])).astype(np.int64)


def fim_transform(window: np.ndarray, ids: FimIds, rng: np.random.Generator, spm_rate: float = 0.5) -> np.ndarray:
    """Rearrange the start of ``window[: len - 4]`` into a fill-in-the-middle example, followed by
    the rest of it, ``len(window)`` tokens in all."""
    body = np.asarray(window[: len(window) - SENTINELS])
    k = int(rng.integers(min(8, len(body)), len(body) + 1))
    a, b = split_points(k, rng)
    fn = spm if rng.random() < spm_rate else psm
    return np.concatenate((fn(body[:a], body[a:b], body[b:k], ids), body[k:]))


def infill_prompt(prefix: np.ndarray, suffix: np.ndarray, ids: FimIds) -> np.ndarray:
    """What the model reads before writing the middle (PSM order)."""
    return np.concatenate(([ids.pre], prefix, [ids.suf], suffix, [ids.mid])).astype(np.int64)


def apply_objective(x: np.ndarray, n_fim: int, ids: FimIds, rng: np.random.Generator) -> np.ndarray:
    """Transform the last ``n_fim`` rows of a (B, L) batch in place and return it."""
    for r in range(x.shape[0] - n_fim, x.shape[0]):
        x[r] = fim_transform(x[r], ids, rng)
    return x
