"""seqgen eval's per-note figure: the split's total loss in bits over its notes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqgen.evaluate import per_note
from seqgen.music.piece import DRUMS, TPQ, Piece
from seqgen.tokenizers.midi import MidiTokenizer


def _piece() -> Piece:
    # three pitched notes (one a chord tone) and two drum hits
    return Piece.from_notes([(0, TPQ, 60, 80, 0), (0, TPQ, 64, 80, 0), (TPQ, TPQ, 67, 80, 0),
                             (0, TPQ // 2, 36, 100, DRUMS), (TPQ, TPQ // 2, 38, 100, DRUMS)])


@pytest.mark.parametrize("version", [1, 2, 3])
def test_bits_per_note_is_the_total_loss_in_bits_over_the_notes(version):
    tok = MidiTokenizer(version=version)
    ids = tok.encode(_piece())
    losses = np.linspace(0.5, 2.0, len(ids) - 1)  # one loss per predicted token (all but the first)
    got = per_note(losses, ids, tok)
    assert got["val_notes"] == 5  # pitched and drum notes alike; nothing else counts
    assert got["val_bits_per_note"] == pytest.approx(losses.sum() / math.log(2) / 5)


def test_a_split_without_notes_has_no_figure():
    tok = MidiTokenizer(version=2)
    ids = np.array([0, tok.bar_id, 1])
    assert per_note(np.ones(2), ids, tok) == {"val_notes": 0, "val_bits_per_note": None}
