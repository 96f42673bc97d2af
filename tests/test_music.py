"""MIDI tokenizer and music corpora, on real files (../shared/music, music21's corpus) and broken ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from seqgen.music.files import read_midi, read_music21
from seqgen.music.piece import DRUMS, Piece
from seqgen.tokenizers import tokenizer_from_dict
from seqgen.tokenizers.midi import K, MidiTokenizer

MIDI_FILES = ["english1.mid", "english2.mid", "english3.mid", "example.mid", "melody.mid",
              "example_complex.mid", "example_is_drum.mid"]


@pytest.fixture(scope="module")
def tok() -> MidiTokenizer:
    return MidiTokenizer()


def quantized(piece: Piece, tok: MidiTokenizer) -> set:
    """What the tokenizer promises to keep: onsets on its grid, durations from its table."""
    f = tok.resolution / piece.tpq
    t = np.rint(piece.time * f).astype(int)
    d = tok.durations[tok.quantize_duration(np.maximum(piece.duration * f, 1))]
    return set(zip(t.tolist(), d.tolist(), piece.pitch.tolist(), piece.program.tolist()))


def onsets(piece: Piece, tok: MidiTokenizer) -> set:
    f = tok.resolution / piece.tpq
    return set(zip(np.rint(piece.time * f).astype(int).tolist(), piece.pitch.tolist(), piece.program.tolist()))


# ---- tokenizer ----------------------------------------------------------------------------
def test_import_is_light():
    code = ("import sys, seqgen.tokenizers.midi, seqgen.music.piece, seqgen.cli; "
            "print(sorted(m for m in ('torch', 'music21', 'miditok', 'symusic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_config_round_trips_through_json(tok):
    d = json.loads(json.dumps(tok.to_dict()))
    assert d["type"] == "midi"
    again = tokenizer_from_dict(d)
    assert again == tok and again.vocab_size == tok.vocab_size
    assert MidiTokenizer(resolution=8) != tok
    sentinels = {tok.pre_id, tok.suf_id, tok.mid_id, tok.eot_id, tok.bos_id, tok.eos_id}
    assert len(sentinels) == 6 and max(sentinels) < tok.vocab_size
    with pytest.raises(Exception, match="resolution"):
        MidiTokenizer(resolution=7)


@pytest.mark.parametrize("name", MIDI_FILES)
def test_midi_round_trip_keeps_every_onset(music_dir, tok, name):
    piece = read_midi(music_dir / name)
    ids = tok.encode(piece)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and ids.max() < tok.vocab_size
    back = tok.decode(ids)
    assert back.info["dropped_tokens"] == 0
    assert onsets(back, tok) == onsets(piece, tok)
    if name in ("english1.mid", "english2.mid", "melody.mid", "example.mid"):  # no overlapping equal notes
        assert quantized(back, tok) == quantized(piece, tok)


def test_drums_and_programs_survive(music_dir, tok):
    piece = read_midi(music_dir / "example_complex.mid")
    back = tok.decode(tok.encode(piece))
    assert set(back.program.tolist()) == set(piece.program.tolist())
    assert DRUMS in set(back.program.tolist())
    assert len(np.unique(back.tempos[:, 1])) >= 2  # tempo changes are kept


def test_chorales_round_trip_exactly(tok):
    from seqgen.data.sources import bach_chorale_paths

    for path in bach_chorale_paths()[:4]:
        piece = read_music21(path)[0]
        assert len(set(piece.program.tolist())) == 1 and len(piece) > 100
        back = tok.decode(tok.encode(piece))
        assert quantized(back, tok) == quantized(piece, tok), path.name
        assert back.note_set(tok.resolution) == piece.note_set(tok.resolution), path.name  # on the grid already


def test_bach_chorale_list_is_unique():
    from seqgen.data.sources import bach_chorale_paths

    paths = bach_chorale_paths()
    assert 340 <= len(paths) <= 360
    assert len(set(paths)) == len(paths) and all(p.exists() for p in paths)
    assert bach_chorale_paths() == paths  # the listing is cached and stable


def test_musicxml_and_abc_read(music_dir, tok):
    anne = read_music21(music_dir / "st_anne.xml")
    assert len(anne) == 1 and len(anne[0]) > 50
    flute = read_music21(music_dir / "flute_scale.mxl")[0]
    assert len(flute) >= 8
    tunes = read_music21(music_dir / "english.abc")
    assert len(tunes) >= 2  # several tunes in one file, one piece each
    for p in anne + tunes:
        assert onsets(tok.decode(tok.encode(p)), tok) == onsets(p, tok)


def test_transpose_batch_moves_pitches_only(music_dir, tok):
    ids = tok.encode(read_midi(music_dir / "example_complex.mid"))[:2000]
    x = np.stack([ids[:500], ids[500:1000], ids[1000:1500]])
    rng = np.random.default_rng(0)
    y = tok.transpose_batch(x, rng, -5, 6)
    kinds = tok.kinds_of(x)
    pitch = kinds == K["Pitch"]
    assert (y[~pitch] == x[~pitch]).all()  # drums, durations, bars... untouched
    shifts = [set((y[r] - x[r])[pitch[r]].tolist()) for r in range(3)]
    assert all(len(s) == 1 and -5 <= s.pop() <= 6 for s in shifts)
    many = np.stack([tok.transpose_batch(x[:1], np.random.default_rng(s), -5, 6)[0] for s in range(40)])
    assert len({int((m - x[0])[pitch[0]][0]) for m in many}) > 5  # the shift varies between draws
    # a row near the top of the range is shifted only downwards
    high = np.array([[tok.bar_id, tok.offset["Pitch"] + 125, tok.offset["Duration"]]])
    for s in range(20):
        z = tok.transpose_batch(high, np.random.default_rng(s), -5, 6)
        assert tok.offset["Pitch"] + 120 <= z[0, 1] <= tok.offset["Pitch"] + 127


def test_a_piece_keeps_its_interval_across_windows_and_a_new_piece_draws_its_own(tok):
    p0, bar, bos = tok.offset["Pitch"], tok.bar_id, tok.bos_id
    row = [bar, p0 + 60, p0 + 64, bar, p0 + 62, bos, bar, p0 + 65, p0 + 67]  # a piece ends, the next begins
    x = np.array([row] * 200)
    held = np.full(200, 3, dtype=np.int64)
    keep = np.arange(200) % 2 == 0  # even rows go on from their last window, odd rows start over
    y = tok.transpose_batch(x, np.random.default_rng(0), -5, 6, held=held, keep=keep)
    before, after = (y - x)[:, [1, 2, 4]], (y - x)[:, [7, 8]]
    assert (before[keep] == 3).all()  # the piece goes on in the key it was heard in
    assert (before == before[:, :1]).all() and (after == after[:, :1]).all()  # one interval per piece
    assert len(set(before[~keep, 0].tolist())) > 5  # rows that start over draw theirs
    assert (after[:, 0] != before[:, 0]).any() and len(set(after[:, 0].tolist())) > 5  # the new piece draws anew
    assert (held == after[:, 0]).all()  # what the next window goes on with


def test_transposed_tokens_decode_to_transposed_music(music_dir, tok):
    piece = read_midi(music_dir / "english1.mid")
    ids = tok.encode(piece)[None]
    up = tok.decode(tok.transpose_batch(ids, np.random.default_rng(1), 3, 3)[0])
    assert sorted(up.pitch.tolist()) == sorted((piece.pitch + 3).tolist())
    assert np.array_equal(np.sort(up.time), np.sort(tok.decode(ids[0]).time))


# ---- repairing what a model writes -------------------------------------------------------------
def test_decode_repairs_out_of_grammar_sequences(tok):
    o = tok.offset
    ids = [tok.bos_id, o["Duration"] + 3,  # a duration with no note
           tok.bar_id, o["Position"] + 12, o["Pitch"] + 60,  # a note with no duration
           o["Position"] + 0, o["Pitch"] + 64, o["Duration"] + len(tok.durations) - 1,  # goes back; too long
           o["PedalOff"], tok.mid_id, 10**6, -3, tok.eos_id, tok.bar_id, o["Pitch"] + 70]
    piece = tok.decode(ids)
    assert piece.info["dropped_tokens"] >= 4
    assert len(piece) == 1 and piece.pitch[0] == 64
    assert piece.time[0] == 12 * 480 // tok.resolution  # a Position cannot go back in time
    assert piece.time[0] + piece.duration[0] <= piece.info["end"]  # cut at the end of the last bar
    assert piece.info["notes_cut"] == 1


def test_random_sequences_always_decode_to_files_that_open(tmp_path, tok):
    import symusic
    from music21 import converter

    from seqgen.music.files import write_piece

    rng = np.random.default_rng(0)
    for seed in range(30):
        ids = rng.integers(-5, tok.vocab_size + 5, size=int(rng.integers(0, 400)))
        if seed % 3 == 0:  # mostly note tokens: many overlaps
            ids = rng.choice([tok.bar_id, tok.offset["Position"] + 3, tok.offset["Pitch"] + 60,
                              tok.offset["Duration"] + 30], size=300)
        piece = tok.decode(ids)
        assert (piece.duration >= 1).all() and ((piece.pitch >= 0) & (piece.pitch <= 127)).all()
        if len(piece):
            assert (piece.time + piece.duration).max() <= piece.info["end"]
        if seed % 10 == 0:
            path = write_piece(piece, tmp_path / f"r{seed}.mid")
            assert symusic.Score(str(path)).note_num() == len(piece)
            try:
                import mido  # in the dev extra
            except ImportError:
                mido = None
            if mido is not None:
                assert len(mido.MidiFile(str(path)).tracks) >= 1
            parsed = converter.parse(str(path))
            assert len(parsed.flatten().notes) > 0 or len(piece) == 0


def test_damaged_midi_is_rejected_with_a_reason_never_a_crash(music_dir, tok):
    from seqgen.errors import MusicFileError

    rng = np.random.default_rng(0)
    sources = [(music_dir / n).read_bytes() for n in ("english1.mid", "example_complex.mid")]
    outcomes = {"read": 0, "rejected": 0}
    for i in range(200):
        data = bytearray(sources[i % 2])
        for _ in range(int(rng.integers(1, 12))):
            data[int(rng.integers(14, len(data)))] = int(rng.integers(0, 256))
        if i % 4 == 0:
            data = data[: int(rng.integers(14, len(data)))]
        if i % 9 == 0:
            data[12:14] = b"\x00\x00"  # zero ticks per quarter note
        try:
            piece = read_midi(bytes(data))
        except MusicFileError as e:
            assert str(e)
            outcomes["rejected"] += 1
            continue
        tok.decode(tok.encode(piece))
        outcomes["read"] += 1
    assert outcomes["read"] > 0 and outcomes["rejected"] > 0


# ---- corpora -----------------------------------------------------------------------------------
def _broken_folder(root, music_dir):
    folder = root / "broken"
    folder.mkdir()
    for name in ("english1.mid", "english2.mid", "melody.mid", "st_anne.xml"):
        shutil.copy(music_dir / name, folder / name)
    (folder / "text.mid").write_text("this is not a MIDI file\n")
    (folder / "truncated.mid").write_bytes((music_dir / "english3.mid").read_bytes()[:300])
    (folder / "empty.mid").write_bytes(
        b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00"
    )
    (folder / "zero.mid").write_bytes(b"")
    (folder / "bad.xml").write_text("<score-partwise><part>")
    return folder


def test_folder_with_broken_files_skips_and_reports(tmp_path, music_dir, monkeypatch):
    from seqgen.data.load import load_corpus

    folder = _broken_folder(tmp_path, music_dir)
    reports = []
    data = load_corpus(str(folder), report=lambda skipped, total: reports.append((skipped, total)), progress=None)
    assert data.meta["files"] == 9 and len(data.meta["pieces"]) == 4
    skipped = dict(data.meta["skipped"])
    assert set(skipped) == {"text.mid", "truncated.mid", "empty.mid", "zero.mid", "bad.xml"}
    assert "not a MIDI file" in skipped["text.mid"] and "no notes" in skipped["empty.mid"]
    assert "corrupt" in skipped["truncated.mid"] and "empty file" in skipped["zero.mid"]
    assert reports and reports[0][1] == 9
    tokens = np.asarray(data.tokens)
    held = np.asarray(data.held_form)
    assert (held == 0).sum() == 4 and (held == 1).sum() == 4  # BOS/EOS per piece as read
    # in training, each piece is BOS ... EOS (twice where its layout gives tracks first)
    assert all(tokens[at] == 0 and tokens[at + n - 1] == 1 for _, at, n in data.meta["pieces"])
    assert tokens.dtype == np.uint16
    # the cache answers the second time, and still reports what it skipped
    again_reports = []
    import seqgen.data.music as music_data

    def no_reading(*args, **kwargs):
        raise AssertionError("a cached corpus must not be read again")

    monkeypatch.setattr(music_data, "encode_file", no_reading)
    again = load_corpus(str(folder), report=lambda s, n: again_reports.append(s), progress=None)
    assert np.array_equal(np.asarray(again.tokens), tokens) and again_reports


def test_folder_with_no_readable_file_is_an_error(tmp_path):
    from seqgen.data.load import load_corpus
    from seqgen.errors import CorpusError

    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.mid").write_text("nope")
    (folder / "b.mid").write_bytes(b"")
    with pytest.raises(CorpusError, match="no readable music"):
        load_corpus(str(folder), report=None, progress=None)


def test_pieces_are_in_a_fixed_order_and_validation_holds_the_last(tmp_path, music_dir):
    from seqgen.data.load import load_corpus

    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("melody.mid", "english2.mid", "english1.mid"):
        shutil.copy(music_dir / name, folder / name)
    data = load_corpus(str(folder), report=None, progress=None)
    names = [p[0] for p in data.meta["pieces"]]
    assert names == ["english1", "english2", "melody"]
    _, val = data.split(0.1)
    start = len(data) - len(val)
    last = data.meta["pieces"][-1]
    assert last[1] + last[2] == len(data) and start > data.meta["pieces"][0][2]


@pytest.mark.slow
def test_many_midi_files_are_all_read(tmp_path, music_dir):
    """Speed is measured by bench/prepare_speed.py, not asserted here."""
    from seqgen.data.load import load_corpus

    folder = tmp_path / "many"
    folder.mkdir()
    names = ["english1.mid", "english2.mid", "example.mid", "melody.mid", "example_is_drum.mid"]
    for i in range(60):
        for n in names:
            shutil.copy(music_dir / n, folder / f"{i:03d}_{n}")
    data = load_corpus(str(folder), report=None, progress=None)
    assert len(data.meta["pieces"]) == 300 and not data.meta["skipped"]


@pytest.mark.slow
def test_music21_files_are_parsed_in_workers(tmp_path, monkeypatch):
    from seqgen.data import music as corpus
    from seqgen.data.sources import bach_chorale_paths

    chorales = bach_chorale_paths()[:16]
    folder = tmp_path / "ch"
    folder.mkdir()
    for p in chorales:
        shutil.copy(p, folder / p.name)
    ticks = []
    data = corpus.load_music_corpus(str(folder), progress=lambda task, d, n: ticks.append(d), report=None, workers=2)
    assert len(data.meta["pieces"]) == 16 and ticks[-1] == 16
    serial = corpus.load_music_corpus(str(folder), report=None, workers=1)  # the cache, same tokens
    assert np.array_equal(np.asarray(serial.tokens), np.asarray(data.tokens))
