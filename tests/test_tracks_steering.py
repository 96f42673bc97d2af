"""Composing to order: the key and density band asked for come out (``seqgen.tokenizers.steering``),
and filling tracks of real multitrack MIDI files keeps the others note for note, with both engines."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import MUSIC
from test_tracks import V3, cli, random_gen

from seqgen.music.controls import Controls, density_band, key_scale, key_text, parse_instruments, parse_key
from seqgen.music.files import read_any, write_piece
from seqgen.music.piece import Piece
from seqgen.music.stats import key_name


# ---- steering, under the worst writer (random logits) -------------------------------------------
@pytest.mark.parametrize("key", ["D minor", "G major", "F# major", "Bb minor", "E minor"])
def test_the_key_asked_for_is_the_key_found(key):
    from seqgen.compose import compose

    for seed in range(3):
        piece = compose(random_gen(V3), bars=4, rng=np.random.default_rng(seed), controls=Controls(key=parse_key(key)),
                        tracks=parse_instruments("piano,violin"))
        assert key_name(piece) == key_text(parse_key(key))
        assert piece.info["dropped_tokens"] == 0 and piece.info["notes_cut"] == 0


@pytest.mark.parametrize("instruments", ["piano,violin,drums", "soprano,alto,tenor,bass"], ids=["band", "choir"])
@pytest.mark.parametrize("band", [0, 1, 2], ids=["low", "medium", "high"])
def test_the_density_band_asked_for_is_the_band_found(band, instruments):
    from seqgen.compose import compose
    from seqgen.tokenizers.steering import density_bounds

    for seed, meter in enumerate([(4, 4), (3, 4), (6, 8), (4, 4), (4, 4), (4, 4)]):
        piece = compose(random_gen(V3), bars=4, rng=np.random.default_rng(seed),
                        controls=Controls(meter=meter, density=band), tracks=parse_instruments(instruments))
        assert density_band(piece) == band
        assert piece.info["dropped_tokens"] == 0 and piece.info["notes_cut"] == 0
        steps = meter[0] * 4 * V3.resolution // meter[1]
        floor = density_bounds(band, steps, V3.resolution)[0]
        bar = steps * piece.tpq // V3.resolution
        for b in range(4):  # every track's part of every bar holds the band's floor of onsets
            for k in range(len(piece.tracks)):
                here = (piece.track == k) & (piece.time // bar == b)
                assert len(np.unique(piece.time[here])) >= floor, (seed, meter, b, piece.tracks[k].name)


def test_a_composition_holds_the_key_its_header_names(monkeypatch):
    """No key asked: the key in the header (here the prime's, D minor) is held by the steering,
    so even random logits keep it; with the hold turned off they wander off to other keys."""
    import seqgen.compose as compose_module
    from seqgen.compose import compose
    from seqgen.music.controls import controls_of
    from seqgen.music.piece import Track

    notes = [(0, 480, 62), (480, 480, 65), (960, 480, 69), (1440, 480, 61)]  # D F A C#
    prime = Piece.from_notes(notes, tpq=480, track=np.zeros(4, dtype=np.int64), tracks=[Track("Piano", 0)])
    assert key_text(controls_of(prime).key) == "D minor"

    def keys():
        return [key_name(compose(random_gen(V3), bars=4, rng=np.random.default_rng(s), prime=prime)) for s in range(4)]

    assert keys() == ["D minor"] * 4
    options = compose_module.grammar_options
    monkeypatch.setattr(compose_module, "grammar_options", lambda *a, **k: options(*a, **{**k, "hold_key": False}))
    assert keys() != ["D minor"] * 4


def test_the_key_steer_masks_only_while_the_key_wavers():
    from seqgen.tokenizers.steering import KeySteer

    steer = KeySteer(parse_key("D minor"), beat=12)
    assert steer.allowed() is None  # nothing written: the prior alone reads as D minor
    for pitch in (65, 69, 72, 77, 60):  # F, A, C, F, C: F major
        steer.add(pitch, 24)
    pcs = steer.allowed()
    assert pcs is not None and pcs[2] and pcs[1] and not pcs[0]  # the tonic and the leading tone; not C
    assert not (pcs & ~key_scale(parse_key("D minor"))).any()
    for _ in range(48):  # the worst allowed choice (the highest pitch class) still brings the key back
        steer.add(int(np.flatnonzero(pcs)[-1]), 12)
        pcs = steer.allowed()
        if pcs is None:
            break
    assert pcs is None and steer.margin(steer.hist) > 0


def test_harmonizing_at_a_density_keeps_the_melody_and_lands_in_the_band(chorale_song):
    from seqgen.voices import harmonize

    full = read_any(chorale_song)[0]
    out = harmonize(random_gen(V3), full, track=0, controls=Controls(density=2), rng=np.random.default_rng(0))
    sop = out.only_tracks([0])
    assert sorted(zip(sop.time.tolist(), sop.pitch.tolist())) == sorted(
        zip(full.time[full.track == 0].tolist(), full.pitch[full.track == 0].tolist()))
    written = out.only_tracks(range(1, len(out.tracks)))
    assert len(out.tracks) >= 2 and density_band(written) == 2
    assert out.info["dropped_tokens"] == 0 and out.info["notes_cut"] == 0


@pytest.fixture(scope="module")
def chorale_song(tmp_path_factory) -> Path:
    from music21 import corpus

    from seqgen.music.files import from_music21

    p = from_music21(corpus.parse("bach/bwv66.6"), name="bwv66.6")
    return write_piece(p.select(p.time < 4 * 4 * p.tpq), tmp_path_factory.mktemp("song") / "song.mid")


# ---- filling tracks of real multitrack files, both engines ---------------------------------------
@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> dict[str, Path]:
    """A tiny version-3 run and its ONNX bundle. Its output layer scores drums and programs in the
    shared row (``VocabHead``), as a trained music run's does with the tokens its corpus lacks."""
    import torch

    from seqgen import checkpoint as ckpt_io
    from seqgen.config import TrainConfig
    from seqgen.export import export_run
    from seqgen.models import build_model, make_config

    root = tmp_path_factory.mktemp("engines")
    torch.manual_seed(0)
    o = V3.offset
    shared = set(range(o["Drum"], o["Drum"] + 128)) | set(range(o["Program"], o["Program"] + 128))
    listed = [i for i in range(V3.vocab_size) if i not in shared]
    model = build_model(make_config("lstm", V3.vocab_size, "tiny", mid_id=V3.mid_id, head_ids=listed))
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=V3, train=TrainConfig(window=32)),
                 root / "run" / ckpt_io.BEST)
    export_run(root / "run", root / "bundle", loss_tokens=0)
    return {"torch": root / "run", "onnx": root / "bundle"}


def regrouped(path: Path) -> Piece:
    """A MIDI file ``compose`` wrote, with its tracks as the piece had them: the writer puts the
    unisons within one track on MIDI tracks of their own, named 'Name (2)', 'Name (3)'... after it."""
    p = read_any(path)[0]
    of, k = [], -1
    for t in p.tracks:
        k += not re.search(r" \(\d+\)$", t.name)
        of.append(k)
    out = p.select(slice(None))
    out.track = np.array(of, dtype=np.int64)[p.track]
    out.tracks = [t for t in p.tracks if not re.search(r" \(\d+\)$", t.name)]
    return out


def written_tracks(path: Path) -> list[Piece]:
    """The tracks of a MIDI file ``compose`` wrote, one Piece each."""
    p = regrouped(path)
    return [p.select(p.track == j) for j in range(len(p.tracks))]


def notes(p: Piece, tracks=None) -> list[tuple]:
    m = np.ones(len(p), dtype=bool) if tracks is None else np.isin(p.track, list(tracks))
    return sorted(zip(*(x[m].tolist() for x in (p.time * 480 // p.tpq, p.duration * 480 // p.tpq, p.pitch,
                                                  p.velocity))))


@pytest.mark.parametrize("engine", ["torch", "onnx"])
@pytest.mark.parametrize("args", [["--fill", "1"], ["--keep", "0,2"]], ids=["fill-1", "keep-0,2"])
def test_filling_a_real_multitrack_midi_keeps_the_other_tracks_note_for_note(engines, music_dir, tmp_path, engine,
                                                                            args):
    song = music_dir / "english3.mid"
    original = read_any(song)[0]
    assert len(original.tracks) == 3
    out = tmp_path / "filled.mid"
    res = cli("compose", engines[engine], "--tracks", song, *args, "--out", out, "--no-roll", "--seed", "0")
    assert res.exit_code == 0, res.output
    assert "repaired" not in res.output
    tracks = written_tracks(out)
    assert len(tracks) == 3
    for k in (0, 2):
        assert notes(tracks[k]) == notes(original, [k])
    assert len(tracks[1]) and notes(tracks[1]) != notes(original, [1])


@pytest.fixture(scope="module")
def eighteen_tracks(tmp_path_factory) -> Path:
    """32 bars of example_complex.mid in which all of its 18 tracks sound."""
    if not MUSIC.is_dir():
        pytest.skip(f"{MUSIC} is absent (the shared music files are not on this machine)")
    p = read_any(MUSIC / "example_complex.mid")[0]
    bar = 4 * p.tpq
    cut = p.select((p.time >= 95 * bar) & (p.time < 127 * bar))
    cut.time = cut.time - 95 * bar
    cut.duration = np.minimum(cut.duration, 32 * bar - cut.time)
    cut.tempos, cut.pedals = cut.tempos[:1], cut.pedals[:0]
    path = write_piece(cut, tmp_path_factory.mktemp("eighteen") / "eighteen.mid")
    assert len(read_any(path)[0].tracks) == 18
    return path


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_a_song_of_18_tracks_merges_the_tracks_that_share_an_instrument(engines, eighteen_tracks, tmp_path, engine):
    original = read_any(eighteen_tracks)[0]
    progs = [t.program for t in original.tracks]
    assert progs.count(29) == 3 and len(set(progs)) == 16
    out = tmp_path / "filled.mid"
    res = cli("compose", engines[engine], "--tracks", eighteen_tracks, "--fill", "drums", "--out", out, "--no-roll",
              "--seed", "0")
    assert res.exit_code == 0, res.output
    assert "merged tracks 8, 9 and 16 (Program 29) into one track" in " ".join(res.output.split())
    tracks = written_tracks(out)
    assert len(tracks) == 16
    groups = [[k for k, p in enumerate(progs) if p == q] for q in dict.fromkeys(progs)]
    drums = next(j for j, g in enumerate(groups) if original.tracks[g[0]].drum)
    for j, g in enumerate(groups):
        if j != drums:  # the merged track holds the notes of all three
            assert notes(tracks[j]) == notes(original, g)


def test_songs_that_cannot_fit_say_why_in_one_line(engines, music_dir, eighteen_tracks, tmp_path):
    out = tmp_path / "x.mid"
    res = cli("compose", engines["onnx"], "--tracks", eighteen_tracks, "--fill", "8", "--out", out)
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert "tracks 8, 9 and 16 share an instrument" in res.output and "fill them or keep them together" in res.output
    whole = music_dir / "example_complex.mid"
    res = cli("compose", engines["onnx"], "--tracks", whole, "--fill", "drums", "--out", out)
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
    assert "147 bars" in res.output and "at most 128 bars" in res.output
    assert not out.exists()


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_cli_compositions_come_out_in_the_key_and_band_asked_with_either_engine(engines, tmp_path, engine):
    for seed, (key, band) in enumerate([("D minor", "high"), ("Eb major", "low")]):
        out = tmp_path / f"c{seed}.mid"
        res = cli("compose", engines[engine], "--key", key, "--density", band, "--instruments", "piano,violin",
                  "--bars", "4", "--out", out, "--seed", seed)
        assert res.exit_code == 0, res.output
        said = " ".join(res.output.split())
        assert f"asked: key {key}" in said and f"found: key {key}" in said and f"density {band}" in said
        made = regrouped(out)
        assert key_name(made) == key and ("low", "medium", "high")[density_band(made)] == band
