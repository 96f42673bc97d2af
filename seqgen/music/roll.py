"""A piano roll of a piece for the terminal (rich), two pitches per text row (half blocks)."""

from __future__ import annotations

import numpy as np

from seqgen.music.piece import DRUMS, Piece
from seqgen.music.stats import key_name, pitch_name, seconds_text

UPPER, LOWER, BOTH = "\u2580", "\u2584", "\u2588"


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


def piano_roll(piece: Piece, width: int = 96, max_rows: int = 24, style: str = "cyan"):
    """A rich renderable: pitch labels on the left, time to the right, bar lines below."""
    from rich.console import Group
    from rich.text import Text

    m = piece.program != DRUMS
    if not m.any():
        return Text("(no pitched notes to draw)", style="dim")
    on, lo, _, per_col = roll_grid(piece, width)
    hi = lo + on.shape[0] - 1
    group = max(1, -(-on.shape[0] // (2 * max_rows)))  # semitones merged into one half row
    if group > 1:
        pad = (-on.shape[0]) % group
        on = np.vstack((on, np.zeros((pad, on.shape[1]), dtype=bool)))
        on = on.reshape(-1, group, on.shape[1]).any(axis=1)
    if on.shape[0] % 2:
        on = np.vstack((on, np.zeros((1, on.shape[1]), dtype=bool)))
    lines = []
    for r in range(0, on.shape[0], 2):
        top_pitch = hi - r * group
        label = pitch_name(top_pitch) if group == 1 and (top_pitch % 12 in (0, 11) or r == 0) else ""
        if group > 1 and r % 8 == 0:
            label = pitch_name(top_pitch)
        row = Text(f"{label:>5} ", style="dim")
        upper, lower = on[r], on[r + 1]
        cells = np.where(upper & lower, BOTH, np.where(upper, UPPER, np.where(lower, LOWER, " ")))
        row.append("".join(cells.tolist()), style=style)
        lines.append(row)
    ruler = [" "] * width
    for b in piece.info.get("bar_starts", []):
        c = int(b / per_col)
        if 0 <= c < width:
            ruler[c] = "|"
    lines.append(Text("      " + "".join(ruler), style="dim"))
    lines.append(Text(f"{pitch_name(lo):>5} lowest; one column = {per_col / piece.tpq:.2f} quarter notes", style="dim"))
    return Group(*lines)
