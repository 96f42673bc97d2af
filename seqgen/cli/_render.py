"""Terminal drawings the CLI shows: the piano roll of a piece (two pitches per text row, half blocks)."""

from __future__ import annotations

import numpy as np
from rich.console import Group
from rich.text import Text

from seqgen.music.piece import DRUMS, Piece
from seqgen.music.roll import roll_grid
from seqgen.music.stats import pitch_name

UPPER, LOWER, BOTH = "\u2580", "\u2584", "\u2588"


def piano_roll(piece: Piece, width: int = 96, max_rows: int = 24, style: str = "cyan"):
    """A rich renderable: pitch labels on the left, time to the right, bar lines below."""
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
