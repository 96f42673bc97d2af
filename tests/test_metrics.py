"""MusPy's measures and the per-bar overlap area, against values worked out by hand on tiny pieces;
and seqgen eval reporting them beside the copy check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqgen.music import metrics as mx
from seqgen.music.piece import DRUMS, Piece

# Two 4/4 bars at 24 ticks per quarter (one tick = one step of MusPy's grid):
#   bar 1: C4 beat 1, E4 beat 2, G4 beats 3-4 with C5 on beat 3;  bar 2: C#4 beat 1, C4 beat 4
NOTES = [(0, 24, 60), (24, 24, 64), (48, 48, 67), (48, 24, 72), (96, 24, 61), (168, 24, 60)]


def tiny() -> Piece:
    return Piece.from_notes(NOTES, tpq=24, time_sigs=np.array([[0, 4, 4]]))


def test_each_measure_of_a_tiny_piece():
    p = tiny()
    assert mx.pitch_range(p) == 12  # C4..C5
    # pitch classes C C C C# E G: shares 1/2, 1/6, 1/6, 1/6
    assert mx.pitch_class_entropy(p) == pytest.approx(0.5 * 1 + 3 * (1 / 6) * math.log2(6))
    assert mx.scale_consistency(p) == pytest.approx(5 / 6)  # C major holds all but the C#
    assert mx.empty_beat_rate(p) == pytest.approx(2 / 8)  # beats 6 and 7 of 8 are silent
    # sounding: 48 steps of one pitch, 24 of two, then 24 + 24 + 24 of one; 48 silent
    assert mx.polyphony(p) == pytest.approx((48 + 48 + 24 + 24 + 24) / (48 + 24 + 24 + 24 + 24))
    assert mx.polyphony_rate(p) == 0.0  # never more than two at once
    assert mx.polyphony_rate(p, threshold=1) == pytest.approx(24 / 192)
    # onsets at steps {0, 24, 48} then {0, 72}: they differ at 24, 48 and 72 of 96 steps
    assert mx.groove_consistency(p) == pytest.approx(1 - 3 / 96)
    assert set(mx.measures(p)) == set(mx.MEASURES)


def test_measures_bar_by_bar():
    rows = mx.per_bar(tiny())
    assert rows["pitch_range"] == [12, 1]
    assert rows["pitch_class_entropy"] == pytest.approx([1.5, 1.0])  # C C E G; C# C
    assert rows["scale_consistency"] == pytest.approx([1.0, 1.0])  # C# major holds C (as B#)
    assert rows["empty_beat_rate"] == pytest.approx([0.0, 0.5])
    assert rows["polyphony"] == pytest.approx([120 / 96, 1.0])
    assert rows["polyphony_rate"] == [0.0, 0.0]
    assert rows["groove_consistency"] == pytest.approx([1 - 3 / 96])


def test_drums_are_left_out_of_pitch_measures_but_fill_beats():
    p = Piece.from_notes([(0, 24, 60, 80, 0), (24, 24, 36, 80, DRUMS), (48, 24, 84, 80, DRUMS)], tpq=24)
    assert mx.pitch_range(p) == 0 and mx.pitch_class_entropy(p) == 0.0 and mx.scale_consistency(p) == 1.0
    assert mx.empty_beat_rate(p) == 0.0  # the drum hits fill beats 2 and 3
    assert mx.polyphony(p) == 1.0 and mx.polyphony_rate(p) == 0.0


def test_silence_has_neutral_values():
    p = Piece.from_notes([], tpq=24)
    values = mx.measures(p)
    assert values["pitch_range"] == 0 and values["polyphony"] == 0 and values["scale_consistency"] == 0
    assert mx.overlap_area([], [1.0]) is None


def test_all_twelve_pitch_classes_once_are_the_highest_entropy():
    p = Piece.from_notes([(i * 24, 24, 60 + i) for i in range(12)], tpq=24)
    assert mx.pitch_class_entropy(p) == pytest.approx(math.log2(12))
    assert mx.scale_consistency(p) == pytest.approx(7 / 12)
    assert mx.pitch_range(p) == 11


def test_overlap_area():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 400)
    assert mx.overlap_area(a, a) == pytest.approx(1.0, abs=1e-3)
    assert mx.overlap_area(a, a + 100) < 1e-6
    # two unit normals one standard deviation apart overlap by 2 * Phi(-1/2) = 0.617
    b = rng.normal(1, 1, 400)
    assert mx.overlap_area(a, b) == pytest.approx(2 * 0.5 * math.erfc(0.5 / math.sqrt(2)), abs=0.06)
    assert mx.overlap_area(a, b) == pytest.approx(mx.overlap_area(b, a))
    assert mx.overlap_area([3.0, 3.0], [3.0]) == 1.0  # the same single value


def test_compare_sets_puts_both_sets_side_by_side():
    p, q = tiny(), Piece.from_notes([(i * 24, 24, 60 + 2 * i) for i in range(8)], tpq=24)
    same = mx.compare_sets([p, q], [p, q])
    assert same["generated"] == same["held_out"]
    assert all(v == pytest.approx(1.0, abs=1e-3) for v in same["overlap_per_bar"].values())
    other = mx.compare_sets([q], [p])
    assert other["generated"]["pitch_range"] == 14 and other["held_out"]["pitch_range"] == 12
    assert other["overlap_per_bar"]["pitch_range"] < 0.5  # q's bars span 6 and 6 semitones, p's 12 and 1


def test_a_chorale_looks_like_one():
    music21 = pytest.importorskip("music21")
    from seqgen.music.files import from_music21

    p = from_music21(music21.corpus.parse("bwv66.6"))
    values = mx.measures(p)
    assert values["scale_consistency"] > 0.9  # F# minor, with a few accidentals
    assert 3.0 <= values["polyphony"] <= 4.0 and values["polyphony_rate"] > 0.8  # four voices
    assert values["empty_beat_rate"] < 0.1  # the pickup's padding only


def test_a_three_note_chord_counts_for_the_polyphony_rate():
    p = Piece.from_notes([(0, 48, 60), (0, 48, 64), (0, 24, 67), (48, 48, 72)], tpq=24)
    assert mx.polyphony_rate(p) == pytest.approx(24 / 96)  # three pitches for the first beat only
    assert mx.polyphony(p) == pytest.approx((24 * 3 + 24 * 2 + 48) / 96)


def test_the_measures_agree_with_muspy_on_real_files(music_dir, tmp_path):
    """Optional (MusPy 0.5.0 is not a dependency): the same values as MusPy on real MIDI files, but
    for the documented edge of empty beats and groove (one beat or bar past the end)."""
    muspy = pytest.importorskip("muspy", reason="MusPy is not installed (pip install muspy==0.5.0)")
    from seqgen.music.files import read_midi

    files = [f for f in sorted(music_dir.glob("*.mid")) if f.name != "example_is_drum.mid"]
    assert files
    for f in files:
        m, p = muspy.read_midi(f), read_midi(f)
        m.adjust_resolution(mx.STEPS)
        for name in ("pitch_range", "pitch_class_entropy", "scale_consistency", "polyphony", "polyphony_rate"):
            assert getattr(mx, name)(p) == pytest.approx(getattr(muspy, name)(m), abs=1e-9), (f.name, name)
        assert mx.empty_beat_rate(p) == pytest.approx(muspy.empty_beat_rate(m), abs=0.02), f.name
        n, d = p.time_sigs[0, 1:].tolist() if len(p.time_sigs) else (4, 4)
        theirs = muspy.groove_consistency(m, mx.STEPS * 4 * n // d)
        if theirs == theirs:  # MusPy gives nan for a piece shorter than two bars
            assert mx.groove_consistency(p) == pytest.approx(theirs, abs=0.01), f.name
