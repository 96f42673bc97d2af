"""Tracks in pieces and files, the version-2 and -3 tokens, the grammar mask, and writing tracks
around given ones (harmonize, fill) through the library and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from seqgen.music.files import from_music21, read_any, write_piece
from seqgen.music.piece import Piece
from seqgen.tokenizers.midi import MidiTokenizer

V2 = MidiTokenizer(version=2)
V3 = MidiTokenizer(version=3)  # what new runs get
TRACKS = {"v2": V2, "v3": V3}


@pytest.fixture(scope="module")
def chorale() -> Piece:
    from music21 import corpus

    return from_music21(corpus.parse("bach/bwv66.6"), name="bwv66.6")


def by_track(p: Piece) -> dict[str, set]:
    out: dict[str, set] = {}
    for t, d, n, k in zip(p.time.tolist(), p.duration.tolist(), p.pitch.tolist(), p.track.tolist()):
        out.setdefault(p.tracks[k].name, set()).add((t * 480 // p.tpq, d * 480 // p.tpq, n))
    return out


# ---- tracks in pieces and files ------------------------------------------------------------------
def test_a_chorale_reads_as_four_named_voices(chorale):
    assert [t.name for t in chorale.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    sop = chorale.only_tracks([0])
    bass = chorale.only_tracks([3])
    assert len(sop) and len(bass) and sop.pitch.mean() > bass.pitch.mean() + 12


@pytest.mark.parametrize("suffix", [".mid", ".musicxml"])
def test_tracks_survive_writing_and_reading(chorale, tmp_path, suffix):
    path = write_piece(chorale, tmp_path / f"c{suffix}")
    back = read_any(path)[0]
    assert [t.name for t in back.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    assert by_track(back) == by_track(chorale)


def test_a_real_multitrack_midi_keeps_its_tracks(music_dir, tmp_path):
    song = read_any(music_dir / "example_complex.mid")[0]
    assert len(song.tracks) > 4 and any(t.drum for t in song.tracks)
    back = read_any(write_piece(song, tmp_path / "s.mid"))[0]
    # a track whose equal notes overlap (a unison within it) is written as two MIDI tracks, "Name (2)"
    assert {(t.name.split(" (")[0], t.program, t.drum) for t in back.tracks} == \
        {(t.name, t.program, t.drum) for t in song.tracks}
    assert len(back.tracks) - len(song.tracks) <= 2
    assert back.note_set() == song.note_set()


def test_musicxml_parts_become_named_tracks(music_dir):
    score = read_any(music_dir / "st_anne.xml")[0]
    assert [t.name for t in score.tracks] == ["Harpsichord", "Piano"]


# ---- version-2 tokens ----------------------------------------------------------------------------
def test_version_one_is_untouched():
    v1 = MidiTokenizer()
    assert v1.vocab_size == 629 and v1.to_dict()["version"] == 1
    assert MidiTokenizer.from_dict(V2.to_dict()) == V2 and V2.vocab_size > v1.vocab_size


@pytest.mark.parametrize("tok", TRACKS.values(), ids=TRACKS.keys())
def test_tokens_with_tracks_round_trip_real_files(tok, chorale, music_dir):
    pieces = [chorale] + [read_any(music_dir / n)[0] for n in ("english1.mid", "example_complex.mid", "st_anne.xml")]
    for p in pieces:
        for given in range(len(p.tracks) + 1) if tok.version >= 3 else [None]:
            once = tok.decode(tok.encode(p, given=given))
            twice = tok.decode(tok.encode(once))
            assert by_track(twice) == by_track(once), (p.name, given)
            assert [t.name for t in once.tracks] == [t.name for t in twice.tracks]
            assert once.info["dropped_tokens"] == 0
            assert by_track(tok.decode(tok.encode(p, given=0))) == by_track(once)  # the given ones first lose nothing
    ids = tok.encode(chorale)
    names = [tok.token_name(i) for i in ids[:20]]
    assert names[:2] == ["BOS", "Key_18"] and "Track_3" in names  # F# minor; four tracks in the header
    once = tok.decode(ids)
    assert by_track(once) == by_track(chorale) and once.info["key"] == "F# minor"


def test_version_three_writes_a_chord_of_voices_together(chorale):
    """Voices interleave by onset; a choir voice's note implies the next voice's Track, so a chord
    of four voices costs as many tokens as in version 1, where version 2 lists every voice apart."""
    v1 = MidiTokenizer()
    n1, n2, n3 = (len(t.encode(chorale)) for t in (v1, V2, V3))
    assert n3 < 1.1 * n1 and n2 > 1.3 * n1
    names = [V3.token_name(i) for i in V3.encode(chorale)]
    bar = names.index("Bar", names.index("Bar") + 1)  # the first full bar: four voices on the first beat
    assert names[bar + 1:bar + 4] == ["Mix_0", "Position_0", "Velocity_10"]
    assert [n.split("_")[0] for n in names[bar + 4:bar + 12]] == ["Pitch", "Duration"] * 4
    given = [V3.token_name(i) for i in V3.encode(chorale, given=1)]
    b = given.index("Bar", given.index("Bar") + 1)
    assert given[b + 1] == "Track_0" and "Mix_0" in given[b + 2:given.index("Bar", b + 1)]


@pytest.mark.parametrize("given", [0, 1, 3, 4])
def test_the_grammar_allows_every_token_of_a_real_chorale(chorale, given):
    from seqgen.tokenizers.grammar import TokenGrammar

    ids = V3.encode(chorale, given=given)
    grammar = TokenGrammar(V3, bars=len(V3.bar_indices(ids)))
    for j, i in enumerate(ids.tolist()):
        assert grammar.allowed()[i], (j, V3.token_name(i), [V3.token_name(k) for k in ids[max(0, j - 8):j]])
        grammar.push(i)


@pytest.mark.parametrize("tok", TRACKS.values(), ids=TRACKS.keys())
def test_training_pieces_shuffle_tracks_and_drop_controls(tok, chorale):
    seen_orders, dropped, mixed = set(), 0, 0
    for i in range(16):
        p = chorale.select(slice(None))
        p.name = f"c{i}"
        ids = tok.encode(p, training=True)
        d = tok.decode(ids)
        seen_orders.add(tuple(t.name for t in d.tracks))
        dropped += "key" not in d.info
        if tok.version >= 3:  # a bar opens with Mix when no track is given
            bar = int(np.flatnonzero(ids == tok.bar_id)[1])
            mixed += tok.token_name(int(ids[bar + 1])) == "Mix_0"
        assert by_track(d) == by_track(tok.decode(tok.encode(chorale)))
    assert len(seen_orders) > 1 and ("Soprano", "Alto", "Tenor", "Bass") in seen_orders and dropped > 0
    assert tok.version < 3 or 0 < mixed < 16


@pytest.fixture(scope="module")
def voices_folder(chorale, tmp_path_factory) -> Path:
    """24 short four-voice pieces (two-bar cuts of a chorale, each moved by its own interval): a
    corpus large enough to be split by documents."""
    folder = tmp_path_factory.mktemp("voices")
    bar = 4 * chorale.tpq
    for i in range(24):
        cut = chorale.select((chorale.time >= (i % 8) * bar) & (chorale.time < (i % 8 + 2) * bar))
        cut.time = cut.time - (i % 8) * bar
        cut.pitch = cut.pitch + (i // 8) - 1
        write_piece(cut, folder / f"p{i:02d}.mid")
    return folder


def test_held_out_pieces_are_measured_as_read_and_trained_in_layouts(voices_folder):
    """Training gives some tracks first in some pieces; the held-out pieces stay as a composition
    is written (every track in the mix), so their loss measures that."""
    from seqgen.data.music import load_music_corpus
    from seqgen.data.split import split

    def opens_with_mix(ids) -> list[bool]:
        """For each bar: does its first part (after the meter) open with Mix?"""
        names = [V3.token_name(int(i)) for i in ids]
        return [next(n for n in names[b + 1:] if not n.startswith("TimeSig")).startswith("Mix")
                for b, name in enumerate(names) if name == "Bar" and names[b + 1] != "EOS"]

    data = load_music_corpus(str(voices_folder), tokenizer=V3, report=None)
    parts = split(data, 0.1)
    assert parts.mode == "documents" and parts.held_out
    read = [V3.encode(read_any(voices_folder / f"{name}.mid")[0]) for name in parts.held_out]
    assert np.array_equal(np.asarray(parts.val), np.concatenate(read))
    assert all(opens_with_mix(parts.val))
    assert not all(opens_with_mix(parts.train))  # some training pieces give tracks first
    v1 = load_music_corpus(str(voices_folder), tokenizer=MidiTokenizer(), report=None)
    assert v1.held_form is None and "held_form" not in v1.meta  # version 1 has no training layout


def test_a_piece_given_tracks_first_is_also_trained_on_as_read(voices_folder):
    """Version 3 trains on every piece's mix: a piece whose layout gives tracks first comes as
    read too, ahead of that layout. A run made before (no ``mixed_copy`` in its config) keeps
    the stream it trained on, and so the pieces it held out."""
    from seqgen.data.music import load_music_corpus
    from seqgen.tokenizers.tracks import gives_tracks_in_training

    before = {k: v for k, v in V3.to_dict().items() if k != "mixed_copy"}
    assert MidiTokenizer.from_dict(V3.to_dict()) == V3 and not MidiTokenizer.from_dict(before).mixed_copy
    assert "mixed_copy" not in V2.to_dict() and not V2.mixed_copy  # earlier versions: as they were
    new = load_music_corpus(str(voices_folder), tokenizer=V3, report=None)
    old = load_music_corpus(str(voices_folder), tokenizer=MidiTokenizer.from_dict(before), report=None)
    copied = 0
    for (name, at, n), (name0, at0, n0) in zip(new.meta["pieces"], old.meta["pieces"], strict=True):
        piece = read_any(voices_folder / f"{name}.mid")[0]
        doc, doc0 = np.asarray(new.tokens[at:at + n]), np.asarray(old.tokens[at0:at0 + n0])
        assert name == name0 and np.array_equal(doc0, V3.encode(piece, training=True))
        if gives_tracks_in_training(piece):
            copied += 1
            assert np.array_equal(doc, np.concatenate((V3.encode(piece), doc0)))
        else:
            assert np.array_equal(doc, doc0)
    assert 0 < copied < len(new.meta["pieces"])
    assert np.array_equal(np.asarray(new.held_form), np.asarray(old.held_form))


def test_a_lost_held_out_stream_rebuilds_the_cache(voices_folder):
    import warnings

    from seqgen.data.cache import CacheRebuilt, cache_dir
    from seqgen.data.music import corpus_key, load_music_corpus, music_files

    data = load_music_corpus(str(voices_folder), tokenizer=V3, report=None)
    files, root, _ = music_files(str(voices_folder))
    held = cache_dir() / f"{corpus_key(files, root, V3)}.held.bin"
    assert held.exists() and data.held_form is not None
    before = np.array(data.held_form)
    cut = held.with_name("cut")
    cut.write_bytes(held.read_bytes()[:-2])  # a new file, so the stream mapped above stays whole
    cut.replace(held)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_music_corpus(str(voices_folder), tokenizer=V3, report=None)
    assert any(issubclass(w.category, CacheRebuilt) for w in caught)
    assert np.array_equal(np.asarray(again.held_form), before)


def test_transposition_moves_the_key_control(chorale):
    ids = V2.encode(chorale)[None]
    moved = V2.transpose_batch(ids, np.random.default_rng(0), 2, 2)
    assert V2.decode(moved[0]).info["key"] == "Ab minor"


# ---- the grammar ---------------------------------------------------------------------------------
class RandomEngine:
    """Logits drawn at random: the worst writer the grammar must keep in line."""

    def __init__(self, vocab: int, seed: int = 0):
        self.vocab, self.rng = vocab, np.random.default_rng(seed)

    def start(self, batch):
        return None

    def advance(self, ids, state):
        return self.rng.normal(0, 3, (len(ids), self.vocab)).astype(np.float32), state


def random_gen(tok, objective="causal"):
    from seqgen.engines.base import Generator

    return Generator(RandomEngine(tok.vocab_size), tok, "lstm", objective, Path("random"))


@pytest.mark.parametrize("version", [1, 2, 3], ids=["v1", "v2", "v3"])
def test_compositions_under_the_grammar_need_no_repair(version):
    from seqgen.compose import compose

    tok = MidiTokenizer(version=version)
    gen = random_gen(tok)
    for seed in range(4):
        piece = compose(gen, bars=3, rng=np.random.default_rng(seed))
        assert piece.info["dropped_tokens"] == 0 and piece.info["notes_cut"] == 0
        assert piece.info["bars"] == 3


def test_controls_and_instruments_are_obeyed():
    from seqgen.compose import compose
    from seqgen.music.controls import Controls, parse_instruments, parse_key

    gen = random_gen(V3)
    piece = compose(gen, bars=2, rng=np.random.default_rng(1), controls=Controls(parse_key("D minor"), (3, 4), 3, 2),
                    tracks=parse_instruments("piano,violin,drums"))
    assert [t.name for t in piece.tracks] == ["Piano", "Violin", "Drums"]
    assert piece.time_sigs[0, 1:].tolist() == [3, 4] and piece.info["key"] == "D minor"
    assert piece.info["dropped_tokens"] == 0 and piece.info["notes_cut"] == 0


# ---- harmonize and fill --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def song(chorale, tmp_path_factory) -> Path:
    """The first four bars of a chorale as a four-track MIDI file."""
    p = chorale.select(chorale.time < 4 * 4 * chorale.tpq)
    return write_piece(p, tmp_path_factory.mktemp("song") / "song.mid")


@pytest.mark.parametrize("tok", TRACKS.values(), ids=TRACKS.keys())
def test_harmonize_keeps_the_melody_note_for_note(tok, song):
    from seqgen.voices import harmonize

    full = read_any(song)[0]
    out = harmonize(random_gen(tok), full, track=0, rng=np.random.default_rng(0))
    assert by_track(out.only_tracks([0])) == by_track(full.only_tracks([0]))
    assert len(out.tracks) >= 2 and out.info["dropped_tokens"] == 0 and out.info["notes_cut"] == 0


def test_harmonize_adds_the_voices_the_model_finds_most_likely_whatever_the_draws(song):
    """The tracks written around a melody come from the header the model finds most likely (so
    a chorale run writes SATB), not from a draw: the same model gives the same voices for any
    seed, while the notes differ."""
    from seqgen.voices import harmonize

    melody = read_any(song)[0].only_tracks([0])
    outs = [harmonize(random_gen(V3), melody, rng=np.random.default_rng(seed)) for seed in range(4)]
    assert len({tuple(t.name for t in o.tracks) for o in outs}) == 1
    assert len({tuple(o.pitch[o.track > 0].tolist()) for o in outs}) > 1


@pytest.mark.parametrize("tok", TRACKS.values(), ids=TRACKS.keys())
def test_harmonized_voices_sing_one_note_at_a_time_and_never_cross_where_they_start(tok, song):
    from seqgen.voices import harmonize

    out = harmonize(random_gen(tok), read_any(song)[0], track=0, rng=np.random.default_rng(3))
    voices = [k for k, role in enumerate(out.info["roles"]) if k > 0 and role is not None]
    assert voices
    for k in voices:  # the tracks the model wrote with a choir role (others may play chords)
        on, off = out.time[out.track == k], (out.time + out.duration)[out.track == k]
        order = np.argsort(on)
        assert (on[order][1:] >= off[order][:-1]).all()  # one note at a time
        for t, p in zip(out.time[out.track == k].tolist(), out.pitch[out.track == k].tolist()):
            above = (out.track == k - 1) & (out.time <= t) & (t < out.time + out.duration)
            assert not above.any() or p <= out.pitch[above].max()


def test_parallels_are_counted_from_the_onset_before_across_a_rest():
    from seqgen.music.piece import Track
    from seqgen.music.voiceleading import parallel_motions

    # soprano C5 (2 beats) then D5; bass C4 for one beat, a rest, then D4 (the alto holds G4):
    # octaves in parallel from one onset to the next
    notes = [(0, 960, 72), (960, 480, 74), (0, 480, 60), (960, 480, 62), (0, 1440, 67)]
    piece = Piece.from_notes(notes, track=np.array([0, 0, 2, 2, 1]),
                             tracks=[Track("Soprano", 0), Track("Alto", 0), Track("Bass", 0)])
    found, crossings = parallel_motions(piece)
    assert [(f.upper, f.lower, f.start, f.end) for f in found] == [(0, 2, 0, 960)]
    assert (found[0].before, found[0].after) == ((72, 60), (74, 62))
    assert crossings == 0
    moved = Piece.from_notes([(0, 960, 72), (960, 480, 76), (0, 480, 60), (960, 480, 62)],
                             track=np.array([0, 0, 1, 1]), tracks=[Track("Soprano", 0), Track("Bass", 0)])
    assert parallel_motions(moved)[0] == []  # an octave to a tenth


@pytest.mark.parametrize("tok", TRACKS.values(), ids=TRACKS.keys())
def test_the_grammar_forbids_parallel_octaves_across_a_rest(tok):
    """The bass rests before its second note: the octave it would move to with the soprano is
    still parallel (from the onset before), so the grammar masks it."""
    from seqgen.music.piece import Track
    from seqgen.tokenizers.grammar import TokenGrammar

    notes = [(0, 960, 72), (960, 480, 74), (0, 1440, 67), (0, 1440, 64), (0, 480, 60), (960, 480, 62)]
    piece = Piece.from_notes(notes, tpq=480, track=np.array([0, 0, 1, 2, 3, 3]),
                             tracks=[Track(n, 0) for n in ("Soprano", "Alto", "Tenor", "Bass")])
    ids = tok.encode(piece, given=1).tolist()
    grammar = TokenGrammar(tok, bars=len(tok.bar_indices(ids)), voices=True)
    parallel = tok.offset["Pitch"] + 62
    at = len(ids) - 1 - ids[::-1].index(parallel)
    for i in ids[:at]:
        grammar.push(i)
    allowed = grammar.allowed()
    assert not allowed[parallel] and allowed[tok.offset["Pitch"] + 63]


def test_harmonizing_no_voice_is_left_out_of_the_first_onset(chorale):
    """Version 3, the soprano given: after the bass and the tenor of the first chord, the alto
    (which has not sung yet) must sing before the onset closes; so no voice comes out empty."""
    from seqgen.tokenizers.grammar import TokenGrammar

    ids = V3.encode(chorale, given=1).tolist()
    first = ids.index(V3.offset["Mix"])
    names = [V3.token_name(i) for i in ids[first:first + 8]]
    assert names[3:7] == ["Pitch_57", "Duration_6", "Pitch_57", "Duration_6"] and names[7] == "Pitch_64"
    positions = slice(V3.offset["Position"], V3.offset["Position"] + 12 * V3.max_bar_quarters)
    for voices in (True, False):
        grammar = TokenGrammar(V3, bars=len(V3.bar_indices(ids)), voices=voices)
        for i in ids[:first + 7]:
            grammar.push(i)
        allowed = grammar.allowed()
        assert allowed[V3.offset["Pitch"] + 64]
        assert allowed[positions].any() != voices  # only the harmonizing grammar keeps the onset open


def test_harmonized_voices_move_in_no_parallel_fifths_or_octaves(chorale):
    """A whole chorale's soprano harmonized by random logits into alto, tenor and bass, 40 times:
    no pair of voices moves in parallel fifths or octaves (with the grammar's rule switched off,
    3 of these 40 do)."""
    from seqgen.music.controls import parse_instruments
    from seqgen.music.voiceleading import parallel_motions
    from seqgen.voices import harmonize

    melody, atb = chorale.only_tracks([0]), parse_instruments("alto,tenor,bass")
    for seed in range(40):
        out = harmonize(random_gen(V3), melody, rng=np.random.default_rng(seed), voices=atb)
        assert [t.name for t in out.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
        assert parallel_motions(out)[0] == [], seed


@pytest.mark.parametrize("tok", TRACKS.values(), ids=TRACKS.keys())
def test_fill_keeps_the_other_tracks_note_for_note(tok, song):
    from seqgen.voices import fill_tracks, pick_tracks

    full = read_any(song)[0]
    fill = pick_tracks(full, "Alto,2", "--fill")
    assert fill == [1, 2]
    out = fill_tracks(random_gen(tok), full, fill, rng=np.random.default_rng(0))
    assert [t.name for t in out.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]
    for k in (0, 3):
        assert by_track(out.only_tracks([k])) == by_track(full.only_tracks([k]))


# ---- the CLI -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tracks_run(tmp_path_factory) -> Path:
    import torch

    from seqgen import checkpoint as ckpt_io
    from seqgen.config import TrainConfig
    from seqgen.models import build_model, make_config

    root = tmp_path_factory.mktemp("tracksrun")
    torch.manual_seed(0)
    model = build_model(make_config("lstm", V3.vocab_size, "tiny", mid_id=V3.mid_id))
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=V3, train=TrainConfig(window=32)),
                 root / "run" / ckpt_io.BEST)
    return root / "run"


def cli(*args):
    from seqgen.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_harmonize_fill_and_every_control(tracks_run, song, tmp_path):
    out = tmp_path / "h.mid"
    res = cli("compose", tracks_run, "--harmonize", song, "--melody-track", "0", "--out", out, "--seed", "1")
    assert res.exit_code == 0, res.output
    assert "found:" in res.output and read_any(out)[0].tracks[0].name == "Soprano"
    res = cli("compose", tracks_run, "--tracks", song, "--keep", "0,3", "--out", tmp_path / "f.mid", "--no-roll")
    assert res.exit_code == 0, res.output
    res = cli("compose", tracks_run, "--key", "D minor", "--meter", "3/4", "--tempo", "90", "--instruments",
              "piano,violin", "--density", "high", "--bars", "2", "--out", tmp_path / "c.mid", "--seed", "2")
    assert res.exit_code == 0, res.output
    assert "asked: key D minor, meter 3/4, tempo 90, instruments piano,violin, density high" in res.output
    made = read_any(tmp_path / "c.mid")[0]
    names = {t.name.split(" (")[0] for t in made.tracks}  # "Violin (2)": a unison within the track, on its own
    assert names <= {"Piano", "Violin"} and names  # a silent track is not written
    assert made.time_sigs[0, 1:].tolist() == [3, 4] and round(made.qpm_at(0)) == 90


@pytest.mark.parametrize("args, says", [
    (["--harmonize", "SONG"], "say which is the melody with --melody-track N"),
    (["--harmonize", "SONG", "--melody-track", "7"], "--melody-track 7 is not a track"),
    (["--tracks", "SONG", "--fill", "kazoo"], "'kazoo': no such track; the file's tracks are 0: Soprano"),
    (["--tracks", "SONG"], "--tracks needs --fill NAMES or --keep NAMES"),
    (["--key", "H minor"], "unknown key 'H minor'"),
    (["--meter", "5/3"], "unknown meter '5/3'; expected one of"),
    (["--instruments", "piano,kazoo"], "unknown instrument 'kazoo'; expected one of piano"),
    (["--density", "extreme"], "unknown density 'extreme'; expected one of low, medium, high"),
], ids=["several-tracks", "no-such-melody-track", "unknown-track", "fill-or-keep", "key", "meter", "instrument",
        "density"])
def test_each_bad_input_is_one_line_and_writes_nothing(tracks_run, song, tmp_path, args, says):
    out = tmp_path / "x.mid"
    res = cli("compose", tracks_run, *[song if a == "SONG" else a for a in args], "--out", out)
    assert res.exit_code == 1 and says in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not out.exists()


def test_a_version_one_run_is_told_to_retrain_and_still_composes(song, tmp_path):
    import torch

    from seqgen import checkpoint as ckpt_io
    from seqgen.config import TrainConfig
    from seqgen.models import build_model, make_config

    v1 = MidiTokenizer()
    torch.manual_seed(0)
    model = build_model(make_config("lstm", v1.vocab_size, "tiny", mid_id=v1.mid_id))
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=v1, train=TrainConfig(window=32)),
                 tmp_path / "r" / ckpt_io.BEST)
    res = cli("compose", tmp_path / "r", "--harmonize", song, "--melody-track", "0", "--out", tmp_path / "x.mid")
    assert res.exit_code == 1 and "version 1" in res.output and "retrain" in res.output
    res = cli("compose", tmp_path / "r", "--bars", "2", "--out", tmp_path / "y.mid", "--no-roll", "--seed", "0")
    assert res.exit_code == 0, res.output
    assert "repaired" not in res.output and (tmp_path / "y.mid").exists()


def test_a_melody_longer_than_a_run_can_hold_says_the_limit(tracks_run, tmp_path):
    long = Piece.from_notes([[i * 480, 480, 60 + i % 12] for i in range(4 * 130)])
    path = write_piece(long, tmp_path / "long.mid")
    res = cli("compose", tracks_run, "--harmonize", path, "--out", tmp_path / "x.mid")
    assert res.exit_code == 1 and "at most 128 bars" in res.output
