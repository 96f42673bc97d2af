"""The copy index's matching statistics against a brute-force search, for one- and two-byte symbols."""

from __future__ import annotations

import numpy as np
import pytest

from seqgen.copies import CopyIndex, _narrow, note_symbols, suffix_array
from seqgen.music.piece import Piece


def brute(train: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Longest prefix of query[i:] that occurs in train, for every i (quadratic, for tiny inputs)."""
    t, out = train.tolist(), []
    for i in range(len(query)):
        best = 0
        for p in range(len(t)):
            k = 0
            while i + k < len(query) and p + k < len(t) and t[p + k] == query[i + k]:
                k += 1
            best = max(best, k)
        out.append(best)
    return np.array(out)


@pytest.mark.parametrize("alphabet,offset", [(3, 1), (40, 1), (4, 300), (5, 70000)], ids=["u1-small", "u1", "u2", "u4"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matching_statistics_agree_with_brute_force(alphabet, offset, seed):
    rng = np.random.default_rng(seed)
    train = rng.integers(0, alphabet, 300) + offset
    query = rng.integers(0, alphabet, 80) + offset
    query[20:60] = train[100:140]  # a planted copy, longer than one 8-byte key
    symbols = _narrow(train, top=int(train.max()))
    index = CopyIndex("text", symbols, suffix_array(symbols), np.array([0]), ["t"], np.array([0]))
    ms, at = index.matching_statistics(query.astype(symbols.dtype))
    np.testing.assert_array_equal(ms, brute(train, query))
    for i in range(len(query)):  # each reported place holds the match
        np.testing.assert_array_equal(train[at[i] : at[i] + ms[i]], query[i : i + ms[i]])


def test_suffix_array_of_wide_symbols_sorts_them_as_numbers():
    s = _narrow(np.array([3, 1, 2, 1, 2, 0]) + 300)
    assert s.dtype.itemsize == 2
    assert suffix_array(s).tolist() == [5, 3, 1, 4, 2, 0]


def test_note_symbols_ignore_transposition_and_tempo_of_ticks():
    notes = [(0, 480, 60), (480, 480, 64), (960, 240, 67), (960, 240, 72), (1440, 480, 60)]
    a = note_symbols(Piece.from_notes(notes, tpq=480))[0]
    up = note_symbols(Piece.from_notes([(t, d, p + 5) for t, d, p in notes], tpq=480))[0]
    coarse = note_symbols(Piece.from_notes([(t // 4, d // 4, p) for t, d, p in notes], tpq=120))[0]
    assert len(a) == 4 and a.tolist() == up.tolist() == coarse.tolist()
    other = note_symbols(Piece.from_notes([(t, d, p) for t, d, p in notes[:-1]] + [(1200, 480, 60)], tpq=480))[0]
    assert other[-1] != a[-1]  # the same pitches in another rhythm differ
