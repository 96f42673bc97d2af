"""Voice leading between the tracks of a piece, as a chorale's rules count it (own code; music21's
``voiceLeading`` works on its own score objects, one pair of notes at a time).

The piece's onsets are its consecutive sonorities. Between two of them, a pair of voices (tracks,
the header's first the upper one, as a choir lists Soprano, Alto, Tenor, Bass) moves in parallel
fifths or octaves when both sound at both onsets, both move the same way, and the interval
between them (mod 12) is a perfect fifth or an octave at both; they cross where the lower voice
sounds above the upper one. A voice's pitch at an onset is the highest it sounds there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqgen.music.piece import Piece


@dataclass(frozen=True)
class Parallel:
    upper: int  # track index
    lower: int
    start: int  # the onset the pair moves from (ticks)
    end: int  # the onset it moves to
    before: tuple[int, int]  # (upper, lower) pitches
    after: tuple[int, int]


def _sounding(on: np.ndarray, off: np.ndarray, pitch: np.ndarray, t: int) -> int | None:
    hit = (on <= t) & (t < off)
    return int(pitch[hit].max()) if hit.any() else None


def parallel_motions(piece: Piece) -> tuple[list[Parallel], int]:
    """(each parallel fifth and octave between two voices, how many times a lower voice sounds
    above an upper one at an onset)."""
    onsets = np.unique(piece.time).tolist()
    voices = []
    for k in range(len(piece.tracks)):
        m = piece.track == k
        on, pitch = piece.time[m], piece.pitch[m]
        voices.append([_sounding(on, on + piece.duration[m], pitch, t) for t in onsets])
    found, crossings = [], 0
    for a in range(len(voices)):
        for b in range(a + 1, len(voices)):
            for i, (pa, pb) in enumerate(zip(voices[a], voices[b])):
                if pa is None or pb is None:
                    continue
                crossings += pb > pa
                qa, qb = voices[a][i - 1] if i else None, voices[b][i - 1] if i else None
                if qa is None or qb is None or pa == qa or pb == qb or (pa > qa) != (pb > qb):
                    continue
                if abs(qa - qb) % 12 in (0, 7) and abs(pa - pb) % 12 == abs(qa - qb) % 12:
                    found.append(Parallel(a, b, onsets[i - 1], onsets[i], (qa, qb), (pa, pb)))
    return found, crossings


def voice_leading_rates(piece: Piece) -> tuple[float, float]:
    """(parallel fifths and octaves, voice crossings) per 100 beats (quarter notes)."""
    found, crossings = parallel_motions(piece)
    beats = max(piece.end / piece.tpq, 1.0)
    return 100 * len(found) / beats, 100 * crossings / beats
