"""Steering a composition toward what was asked, inside the token grammar's mask
(``seqgen.tokenizers.grammar.TokenGrammar`` calls these; both engines share it).

**Key.** A scale mask alone does not make a key: D minor and F major use the same seven
pitch classes, and a piece in the D minor scale that dwells on F, A and C reads as F major
to the Krumhansl-Schmuckler estimate (``seqgen.music.stats.estimate_key``, what the summary
line and the bench report; music21's default, Aarden-Essen, errs the same way). ``KeySteer``
follows the estimates while the piece is written: it keeps the duration-weighted pitch-class
histogram of every pitched note so far (given tracks and prime included), with a small prior
in the shape of the asked key's profile (so the first notes are free). Before each pitch is
chosen it asks, for each pitch class, what the estimates would be with one more beat of it.
The estimates are four key finders' profiles (``FINDERS``: Krumhansl-Kessler, Aarden-Essen,
Bellman-Budge, Temperley-Kostka-Payne); the asked key's lead is the least of its leads over
the best other key under each. While that lead is at least ``MARGIN`` (in correlation),
nothing more is masked. When it is not, only the pitch classes of the key's scale that widen
the lead (or narrow the deficit) are allowed, or if none does, the one that comes closest:
in practice the tonic and the pitch classes that tell the key from its rival (for a D minor
piece read as F major: the tonic D, the leading tone C#, E and A, but not C, G or Bb), the
tonal centre the profiles say the asked key has. The check is the estimates' own, to first
order, so it steers toward what is measured, and only as much as needed.

**Density.** ``density_band`` counts onsets per quarter note per sounding track. The band
asked for becomes a number of onsets (distinct positions with a note) that each track's part
of a bar must hold: ``DENSITY_ONSETS`` per quarter note, kept inside the band with room to
spare (a piece whose last notes end early reads a little denser). Below the floor the part
may not close yet, and its next position leaves room for the onsets still owed; at the
ceiling no new position may open. A choir voice (one note at a time) then keeps its notes
inside the bar, so the next bar can hold its onsets too. A rule that would leave nothing
to choose is dropped for that step (the grammar wins).
"""

from __future__ import annotations

import math

import numpy as np

from seqgen.music.controls import key_scale

# key profiles (major, minor), tonic first: Krumhansl & Kessler (1982; the estimate of
# seqgen.music.stats, which is not numpy-only), Aarden-Essen (music21's default), Bellman-Budge,
# Temperley-Kostka-Payne (the weights music21.analysis.discrete gives)
FINDERS = {
    "krumhansl": ([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
                  [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17]),
    "aarden": ([17.7661, 0.145624, 14.9265, 0.160186, 19.8049, 11.3587, 0.291248, 22.062, 0.145624, 8.15494,
                0.232998, 4.95122],
               [18.2648, 0.737619, 14.0499, 16.8599, 0.702494, 14.4362, 0.702494, 18.6161, 4.56621, 1.93186,
                7.37619, 1.75623]),
    "bellman": ([16.80, 0.86, 12.95, 1.41, 13.49, 11.93, 1.25, 20.28, 1.80, 8.04, 0.62, 10.57],
                [18.16, 0.69, 12.99, 13.34, 1.07, 11.15, 1.38, 21.07, 7.49, 1.53, 0.92, 10.21]),
    "temperley": ([0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400],
                  [0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330]),
}
_ALL = np.array([[np.roll(np.asarray(w, dtype=np.float64), k) for w in (major, minor) for k in range(12)]
                 for major, minor in FINDERS.values()])  # (finders, 24 keys, 12): major keys, then minor
PROFILES = _ALL[0]  # Krumhansl-Kessler's, for the prior
_Z = (_ALL - _ALL.mean(-1, keepdims=True)) / _ALL.std(-1, keepdims=True)
MARGIN = 0.05  # correlation by which the asked key must lead the next best before pitches are free
PRIOR_BEATS = 2.0  # the prior's weight, in beats of sounding time
# (fewest, most) onsets per quarter note in each track's part of a bar, by density band
DENSITY_ONSETS = ((0.25, 0.75), (1.0, 1.45), (1.75, 4.0))


def correlations(h: np.ndarray) -> np.ndarray:
    """(..., finders, 24) Pearson correlation of histograms (..., 12) with every key's profile."""
    h = np.asarray(h, dtype=np.float64)
    sd = h.std(-1, keepdims=True)
    z = (h - h.mean(-1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    return np.einsum("...p,fkp->...fk", z, _Z) / 12


class KeySteer:
    """The pitch classes that keep a piece reading in ``key`` (tonic + 12 for minor)."""

    def __init__(self, key: int, beat: int):
        self.key, self.beat = int(key), beat
        self.hist = PRIOR_BEATS * beat * PROFILES[self.key] / PROFILES[self.key].sum()
        self.scale = key_scale(self.key)
        self._cached: np.ndarray | None | bool = False  # allowed() until the next note (False: not known)
        self.steered = 0  # how many times allowed() masked something (for the bench)

    def add(self, pitch: int, steps: int) -> None:
        self.hist[pitch % 12] += steps
        self._cached = False

    def margin(self, h: np.ndarray) -> np.ndarray:
        """(...) how far the asked key leads the best other key, under the finder where it leads least."""
        c = correlations(h)
        others = np.delete(c, self.key, axis=-1)
        return (c[..., self.key] - others.max(-1)).min(-1)

    def allowed(self) -> np.ndarray | None:
        """(12,) bool pitch classes, or None when the key is secure (nothing to mask)."""
        if self._cached is False:
            self._cached = self._allowed()
            self.steered += self._cached is not None
        return self._cached

    def _allowed(self) -> np.ndarray | None:
        now = self.margin(self.hist)
        if now >= MARGIN:
            return None
        after = self.margin(self.hist[None] + self.beat * np.eye(12))  # (12,) one beat more of each
        after = np.where(self.scale, after, -np.inf)
        ok = after > now
        return ok if ok.any() else after >= after.max() - 1e-9


def density_bounds(band: int, bar_steps: int, resolution: int) -> tuple[int, int]:
    """(fewest, most) onsets one track's part of a bar of ``bar_steps`` may hold."""
    lo, hi = DENSITY_ONSETS[band]
    quarters = bar_steps / resolution
    return min(math.ceil(lo * quarters), bar_steps), max(math.floor(hi * quarters), 1)
