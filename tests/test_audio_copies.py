"""Audio (seqgen render, compose --wav) and the copy check (compose, sample, infill), through the CLI."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from seqgen.cli import app
from seqgen.music import audio

runner = CliRunner()
CHORALES = ("bwv66.6", "bwv1.6", "bwv10.7", "bwv101.7", "bwv102.7")


def soundfont() -> Path:
    try:
        return audio.find_soundfont()
    except audio.SoundFontError:
        pytest.skip("no SoundFont on this machine (apt-get install timgm6mb-soundfont, or set SEQGEN_SOUNDFONT)")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 2
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
        return frames.astype(np.float64) / 32768, w.getframerate()


@pytest.fixture(scope="module")
def chorales(tmp_path_factory) -> Path:
    """Five Bach chorales from music21's bundled corpus, as MIDI files in a folder."""
    from music21 import corpus

    from seqgen.music.files import from_music21, write_piece

    folder = tmp_path_factory.mktemp("chorales")
    for name in CHORALES:
        write_piece(from_music21(corpus.parse(name), name=name), folder / f"{name}.mid")
    return folder


@pytest.fixture(scope="module")
def music_run(chorales, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "chorales"
    result = runner.invoke(app, ["train", str(chorales), "--size", "tiny", "--steps", "4", "--window", "64",
                                 "--batch", "4", "--threads", "1", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


# ---- audio -------------------------------------------------------------------------------
def test_render_writes_a_wav_as_long_as_the_piece(chorales, tmp_path):
    font = soundfont()
    from seqgen.compose import load_piece

    piece = load_piece(chorales / "bwv66.6.mid")
    result = runner.invoke(app, ["render", str(chorales / "bwv66.6.mid"), str(tmp_path / "out.wav"),
                                 "--soundfont", str(font), "--sample-rate", "22050"])
    assert result.exit_code == 0, result.output
    samples, rate = read_wav(tmp_path / "out.wav")
    assert rate == 22050
    beat = 60.0 / piece.qpm_at(0)
    assert abs(len(samples) / rate - piece.seconds()) < beat
    rms = np.sqrt((samples ** 2).mean(axis=0))
    assert (rms > 0.01).all()  # both channels sound
    # every second from the first note to the last is audible (the pickup bar before it is silent)
    first = int(np.ceil(piece.seconds(int(piece.time.min())) * rate))
    per_second = np.sqrt((samples[first : first + int(piece.seconds() - first / rate) * rate] ** 2)
                         .reshape(-1, rate, 2).mean(axis=(1, 2)))
    assert len(per_second) >= 20 and (per_second > 1e-3).all()
    assert np.abs(samples[: first - rate // 10]).max() < 1e-3


def test_render_reads_musicxml(music_dir, tmp_path, monkeypatch):
    font = soundfont()
    monkeypatch.setenv(audio.SOUNDFONT_ENV, str(font))  # found through the variable
    result = runner.invoke(app, ["render", str(music_dir / "st_anne.xml"), str(tmp_path / "anne.wav")])
    assert result.exit_code == 0, result.output
    samples, rate = read_wav(tmp_path / "anne.wav")
    assert rate == audio.SAMPLE_RATE and np.abs(samples).max() > 0.05


def test_compose_wav_renders_the_composition(music_run, tmp_path):
    soundfont()
    result = runner.invoke(app, ["compose", str(music_run), "--bars", "4", "--seed", "0", "--out",
                                 str(tmp_path / "c.mid"), "--wav", str(tmp_path / "c.wav"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    samples, rate = read_wav(Path(info["wav"]))
    assert abs(len(samples) / rate - info["seconds"]) < 0.5 + 0.25  # a beat at 120 bpm, and the release


def test_no_soundfont_is_one_line_naming_the_ways_to_get_one(music_run, chorales, tmp_path, monkeypatch):
    monkeypatch.delenv(audio.SOUNDFONT_ENV, raising=False)
    monkeypatch.setattr(audio, "SYSTEM_SOUNDFONTS", (("/nonexistent/TimGM6mb.sf2", "timgm6mb-soundfont"),))
    result = runner.invoke(app, ["render", str(chorales / "bwv66.6.mid"), str(tmp_path / "x.wav")])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "Traceback" not in line
    assert "--soundfont" in line and "SEQGEN_SOUNDFONT" in line and "timgm6mb-soundfont" in line
    # compose finds out before composing: neither the MIDI nor the WAV is written
    result = runner.invoke(app, ["compose", str(music_run), "--bars", "2", "--out", str(tmp_path / "c.mid"),
                                 "--wav", str(tmp_path / "c.wav")])
    assert result.exit_code == 1 and "--soundfont" in result.output
    assert not (tmp_path / "c.mid").exists() and not (tmp_path / "c.wav").exists()


def test_a_bad_soundfont_or_audio_name_is_one_line(chorales, tmp_path):
    (tmp_path / "font.sf2").write_bytes(b"not a soundfont")
    result = runner.invoke(app, ["render", str(chorales / "bwv66.6.mid"), str(tmp_path / "x.wav"),
                                 "--soundfont", str(tmp_path / "font.sf2")])
    assert result.exit_code == 1 and "font.sf2" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.wav").exists()
    result = runner.invoke(app, ["render", str(chorales / "bwv66.6.mid"), str(tmp_path / "x.mp3")])
    assert result.exit_code == 1 and ".wav" in result.output


# ---- the copy check -----------------------------------------------------------------------
def test_compose_names_the_chorale_it_pastes_twelve_bars_of(music_run, chorales, tmp_path):
    """Rewriting bars 13-14 of a training chorale (of about 23) keeps its first 12 bars: a pasted copy."""
    source = chorales / "bwv10.7.mid"
    result = runner.invoke(app, ["compose", str(music_run), "--infill", str(source), "--bars", "13-14", "--seed", "0",
                                 "--out", str(tmp_path / "pasted.mid"), "--json"])
    assert result.exit_code == 0, result.output
    copies = json.loads(result.stdout)["copies"]
    assert copies["unit"] == "notes" and copies["where"]["document"] == "bwv10.7"
    first, last = copies["where"]["bars"]
    assert first == 1 and last >= 12
    assert copies["longest"] >= 100  # 12 bars of four voices
    assert "copy check: longest stretch found in training" in result.stderr and "bwv10.7" in result.stderr


def test_a_transposed_copy_still_counts(music_run, chorales, tmp_path):
    from seqgen.compose import load_piece
    from seqgen.music.files import write_piece

    piece = load_piece(chorales / "bwv101.7.mid")
    piece.pitch = piece.pitch + 3
    write_piece(piece, tmp_path / "up.mid")
    result = runner.invoke(app, ["compose", str(music_run), "--infill", str(tmp_path / "up.mid"), "--bars", "1-1",
                                 "--seed", "0", "--out", str(tmp_path / "o.mid"), "--json"])
    assert result.exit_code == 0, result.output
    copies = json.loads(result.stdout)["copies"]
    assert copies["where"]["document"] == "bwv101.7" and copies["share"] > 0.8


def test_the_check_is_quiet_on_an_unrelated_piece(music_run):
    from music21 import corpus

    from seqgen.copies import run_index
    from seqgen.engines.load import open_generator
    from seqgen.music.files import from_music21

    gen = open_generator(music_run)
    ckpt = gen.info["checkpoint"]
    index, why = run_index(ckpt.corpus, gen.tokenizer, ckpt.train.val_fraction, ckpt.train.split)
    assert index is not None, why
    other = index.check(from_music21(corpus.parse("bwv103.6")))  # a chorale outside the training set
    assert other.longest < 12 and other.share < 0.1


def test_no_check_copies_skips_the_check(music_run, tmp_path):
    result = runner.invoke(app, ["compose", str(music_run), "--bars", "2", "--seed", "0", "--no-check-copies",
                                 "--out", str(tmp_path / "a.mid"), "--json"])
    assert result.exit_code == 0 and "copies" not in json.loads(result.stdout)
    assert "copy check" not in result.stderr


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> tuple[Path, Path]:
    from conftest import TEXT

    folder = tmp_path_factory.mktemp("text")
    corpus = folder / "play.txt"
    corpus.write_text(TEXT + "ROMEO:\nBut soft, what light through yonder window breaks?\n", encoding="utf-8")
    out = folder / "run"
    result = runner.invoke(app, ["train", str(corpus), "--size", "tiny", "--steps", "3", "--window", "32",
                                 "--batch", "4", "--threads", "1", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return corpus, out


def test_a_text_copy_is_reported_with_its_offset(text_run):
    from seqgen.copies import run_index, text_ids
    from seqgen.engines.load import open_generator

    corpus, run = text_run
    gen = open_generator(run)
    ckpt = gen.info["checkpoint"]
    index, why = run_index(ckpt.corpus, gen.tokenizer, ckpt.train.val_fraction, ckpt.train.split)
    assert index is not None, why
    text = corpus.read_text(encoding="utf-8")
    line = "You are all resolved rather to die than to famish?"
    sample = "zq" + line + "qz"
    found = index.check(text_ids(gen.tokenizer, sample))
    assert found.longest == len(line)  # the characters around it occur before no copy of the line
    assert found.where["document"] == "play.txt"
    offset = found.where["offset"]
    assert text[offset : offset + len(line)] == line  # one of its 40 copies, at its character offset
    assert found.unit == "characters" and found.share > 0.5


def test_sample_json_carries_the_copy_check_and_it_is_quiet_on_noise(text_run):
    from seqgen.copies import run_index, text_ids
    from seqgen.engines.load import open_generator

    _, run = text_run
    result = runner.invoke(app, ["sample", str(run), "--length", "120", "--seed", "1", "--num", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 2 and all(len(r["text"]) == 120 for r in rows)
    gen = open_generator(run)
    ckpt = gen.info["checkpoint"]
    index, _ = run_index(ckpt.corpus, gen.tokenizer, ckpt.train.val_fraction, ckpt.train.split)
    for r in rows:  # the reported figures are the check of the text printed
        assert r["copies"] == index.check(text_ids(gen.tokenizer, r["text"])).to_dict()
        assert r["copies"]["longest"] < 20 and r["copies"]["share"] == 0.0  # a 3-step model writes noise
    assert result.stderr.count("copy check:") == 2


def test_check_copies_without_the_corpus(text_run, tmp_path):
    import shutil

    corpus, run = text_run
    moved = tmp_path / "away.txt"
    shutil.move(corpus, moved)
    try:
        result = runner.invoke(app, ["sample", str(run), "--length", "20", "--seed", "1"])
        assert result.exit_code == 0 and "no copy check" in result.stderr
        result = runner.invoke(app, ["sample", str(run), "--length", "20", "--check-copies"])
        assert result.exit_code == 1 and "--check-copies" in result.output and "not at hand" in result.output
    finally:
        shutil.move(moved, corpus)


def test_infill_json_checks_the_middles(text_run):
    _, run = text_run
    result = runner.invoke(app, ["infill", str(run), "--prefix", "First ", "--suffix", " speak.", "--max-length", "30",
                                 "--seed", "0", "--num", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 2
    for r in rows:
        assert r["copies"]["unit"] == "characters" and r["copies"]["longest"] <= len(r["middle"])


# ---- seqgen eval -------------------------------------------------------------------------
def test_eval_json_has_the_literature_measures_and_the_copy_check(music_run):
    from seqgen.music.metrics import MEASURES

    result = runner.invoke(app, ["eval", str(music_run), "--json", "--device", "cpu", "--compositions", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    # bits per note: the split's total loss (mean per predicted token times their count) over its notes
    assert 0 < report["val_notes"] < report["tokens"]
    total_bits = report["val_loss"] * (report["tokens"] - 1) / math.log(2)
    assert report["val_bits_per_note"] == pytest.approx(total_bits / report["val_notes"], rel=1e-4)
    lit = report["music"]["literature"]
    assert set(lit["generated"]) == set(lit["held_out"]) == set(lit["overlap_per_bar"]) == set(MEASURES)
    assert 3.0 <= lit["held_out"]["polyphony"] <= 4.0  # held-out chorales: four voices
    assert all(v is None or 0.0 <= v <= 1.0 for v in lit["overlap_per_bar"].values())
    copies = report["copies"]
    assert copies["checked"] == 2 and copies["unit"] == "notes" and 0.0 <= copies["share"] <= 1.0
    assert copies["held_out"]["checked"] >= 1 and copies["held_out"]["unit"] == "notes"
    result = runner.invoke(app, ["eval", str(music_run), "--json", "--device", "cpu", "--compositions", "1",
                                 "--no-check-copies"])
    assert result.exit_code == 0 and "copies" not in json.loads(result.stdout)


def test_eval_json_checks_samples_of_a_text_run(text_run):
    _, run = text_run
    result = runner.invoke(app, ["eval", str(run), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    copies = json.loads(result.stdout)["copies"]
    assert copies["checked"] == 8 and copies["unit"] == "characters" and copies["span"] == 20
    assert copies["longest"] < 20  # a 3-step model copies nothing
    # held-out text of the same size: the validation tail (the ROMEO line is only there) and the
    # play's repeated lines, which it shares with training by the hundred characters
    assert copies["held_out"]["checked"] == 8 and copies["held_out"]["longest"] >= 100
