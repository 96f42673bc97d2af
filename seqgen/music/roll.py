"""A piece as a piano-roll grid and a one-line summary; the CLI draws them (rich, PNG)."""

from __future__ import annotations

import numpy as np

from seqgen.music.piece import DRUMS, Piece
from seqgen.music.stats import key_name, pitch_name, seconds_text


def summary(piece: Piece) -> str:
    """One line: notes, pitch range, duration, bars and tempo, key estimate."""
    m = piece.program != DRUMS
    if not len(piece):
        return "no notes"
    drums = int((~m).sum())
    parts = [f"{len(piece)} notes" + (f" ({drums} drum hits)" if drums else "")]
    if m.any():
        lo, hi = int(piece.pitch[m].min()), int(piece.pitch[m].max())
        parts.append(f"pitch {pitch_name(lo)}-{pitch_name(hi)} ({lo}-{hi})")
    bars = piece.info.get("bars")
    tempo = f"{piece.qpm_at(0):.0f} bpm"
    parts.append(f"{seconds_text(piece.seconds())} long" + (f" ({bars} bars at {tempo})" if bars else f" at {tempo}"))
    parts.append(f"key {key_name(piece)}")
    return ", ".join(parts)


def roll_grid(piece: Piece, width: int) -> tuple[np.ndarray, int, int, float]:
    """(rows (pitches high to low) x width bool grid, lowest pitch, semitones per row, ticks per column)."""
    m = piece.program != DRUMS
    t, d, p = piece.time[m], piece.duration[m], piece.pitch[m]
    lo, hi = int(p.min()), int(p.max())
    end = max(piece.end, 1)
    per_col = end / width
    grid = np.zeros((hi - lo + 1, width + 1), dtype=np.int64)
    c0 = np.clip((t / per_col).astype(np.int64), 0, width - 1)
    c1 = np.clip(np.ceil((t + d) / per_col).astype(np.int64), c0 + 1, width)
    np.add.at(grid, (p - lo, c0), 1)
    np.add.at(grid, (p - lo, c1), -1)
    on = np.cumsum(grid, axis=1)[:, :width] > 0
    return on[::-1], lo, 1, per_col
