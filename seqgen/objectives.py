"""Masked-completion objectives on token windows.

causal: mask the end and complete it (next-token prediction on the window as it is).

infill: fill-in-the-middle (Bavarian et al. 2022). A window of ``L - 4`` tokens is cut into
prefix, middle and suffix and rearranged, with sentinels, into ``L`` tokens:

    PSM: <pre> prefix <suf> suffix <mid> middle <eot>
    SPM: <pre> <suf> suffix <mid> prefix middle <eot>

The middle's length is drawn per example, uniformly from 1 to half the window, and its start
uniformly among the places it fits; PSM and SPM are chosen with equal odds. The loss covers
every position of the rearranged window (prefix and suffix included), as in the paper.

mixed: a share ``fim_rate`` of the rows of each batch is transformed, the rest stay causal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OBJECTIVES = ("causal", "infill", "mixed")
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
    return np.concatenate(([ids.pre], prefix, [ids.suf], suffix, [ids.mid], middle, [ids.eot])).astype(np.int64)


def spm(prefix, middle, suffix, ids: FimIds) -> np.ndarray:
    return np.concatenate(([ids.pre, ids.suf], suffix, [ids.mid], prefix, middle, [ids.eot])).astype(np.int64)


def fim_transform(window: np.ndarray, ids: FimIds, rng: np.random.Generator, spm_rate: float = 0.5) -> np.ndarray:
    """Rearrange ``window[: len - 4]`` into a fill-in-the-middle example of ``len(window)`` tokens."""
    src = np.asarray(window[: len(window) - SENTINELS])
    a, b = split_points(len(src), rng)
    fn = spm if rng.random() < spm_rate else psm
    return fn(src[:a], src[a:b], src[b:], ids)


def fim_inverse(seq: np.ndarray, ids: FimIds) -> np.ndarray:
    """The original tokens of a PSM or SPM example (prefix + middle + suffix)."""
    seq = np.asarray(seq)
    if len(seq) < 4 or seq[0] != ids.pre:
        raise ValueError("not a fill-in-the-middle sequence: it must start with <pre>")
    mid_at = int(np.flatnonzero(seq == ids.mid)[0])
    end = np.flatnonzero(seq == ids.eot)
    stop = int(end[0]) if len(end) else len(seq)
    if seq[1] == ids.suf:  # SPM: <pre><suf> suffix <mid> prefix middle <eot>
        suffix = seq[2:mid_at]
        return np.concatenate((seq[mid_at + 1 : stop], suffix))
    suf_at = int(np.flatnonzero(seq == ids.suf)[0])
    prefix, suffix = seq[1:suf_at], seq[suf_at + 1 : mid_at]
    return np.concatenate((prefix, seq[mid_at + 1 : stop], suffix))


def infill_prompt(prefix: np.ndarray, suffix: np.ndarray, ids: FimIds) -> np.ndarray:
    """What the model reads before writing the middle (PSM order)."""
    return np.concatenate(([ids.pre], prefix, [ids.suf], suffix, [ids.mid])).astype(np.int64)


def apply_objective(x: np.ndarray, n_fim: int, ids: FimIds, rng: np.random.Generator) -> np.ndarray:
    """Transform the last ``n_fim`` rows of a (B, L) batch in place and return it."""
    for r in range(x.shape[0] - n_fim, x.shape[0]):
        x[r] = fim_transform(x[r], ids, rng)
    return x
