"""The music commands through the CLI: corpus list, train on a folder with broken files,
compose (bars, prime, infill, MusicXML, roll), eval on a music run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqgen.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def folder(workdir) -> Path:
    music = Path(__file__).resolve().parents[1].parent / "shared" / "music"
    if not music.is_dir():
        pytest.skip(f"{music} is absent")
    f = workdir / "tunes"
    f.mkdir()
    for name in ("english1.mid", "english2.mid", "melody.mid"):
        shutil.copy(music / name, f / name)
    (f / "notes.mid").write_text("not a MIDI file at all")
    (f / "cut.mid").write_bytes((music / "english3.mid").read_bytes()[:200])
    return f


@pytest.fixture(scope="module")
def run(folder, workdir) -> Path:
    out = workdir / "runs" / "tunes"
    result = runner.invoke(app, ["train", str(folder), "--size", "tiny", "--steps", "4", "--window", "32",
                                 "--batch", "4", "--threads", "1", "--transpose", "-3..3", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_corpus_list_shows_the_music_corpora():
    result = runner.invoke(app, ["corpus", "list"])
    assert result.exit_code == 0
    assert "bach-chorales" in result.stdout and "folk-abc" in result.stdout


def test_train_skips_broken_files_and_says_why(run, folder, workdir):
    # the run trained; retraining elsewhere on the cached corpus reports the skipped files again
    result = runner.invoke(app, ["train", str(folder), "--size", "tiny", "--steps", "1", "--window", "32",
                                 "--batch", "2", "--threads", "1", "--out", str(workdir / "runs" / "again"), "-q"])
    assert result.exit_code == 0, result.output
    assert "skipped 2 of 5" in result.stderr
    assert "notes.mid: not a MIDI file" in result.stderr and "cut.mid: corrupt MIDI" in result.stderr
    config = json.loads((run / "config.json").read_text())
    assert config["tokenizer"]["type"] == "midi" and config["train"]["transpose"] == [-3, 3]


def test_train_on_a_folder_of_broken_files_fails_cleanly(workdir):
    bad = workdir / "bad"
    bad.mkdir()
    (bad / "a.mid").write_text("nope")
    (bad / "b.midi").write_bytes(b"")
    result = runner.invoke(app, ["train", str(bad), "--steps", "1", "--out", str(workdir / "runs" / "bad")])
    assert result.exit_code == 1
    assert "no readable music" in result.stderr and "Traceback" not in result.output


def test_compose_writes_a_file_that_opens_everywhere(run, workdir):
    import mido
    import symusic
    from music21 import converter

    out = workdir / "out" / "piece.mid"
    result = runner.invoke(app, ["compose", str(run), "--bars", "2", "--seed", "3", "--temp", "0.9",
                                 "--threads", "1", "--tempo", "90", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists() and not list(out.parent.glob(".*tmp*"))
    assert f"wrote {out}" in result.stdout and "bpm" in result.stdout and "key" in result.stdout
    score = symusic.Score(str(out))
    assert score.tempos[0].qpm == pytest.approx(90, abs=0.5)
    assert mido.MidiFile(str(out)).length > 0
    converter.parse(str(out))
    again = runner.invoke(app, ["compose", str(run), "--bars", "2", "--seed", "3", "--temp", "0.9",
                                "--threads", "1", "--tempo", "90", "--out", str(workdir / "out" / "again.mid")])
    assert (workdir / "out" / "again.mid").read_bytes() == out.read_bytes()  # same seed, same piece
    assert again.exit_code == 0


def test_compose_prime_musicxml_and_no_roll(run, workdir, music_dir):
    from music21 import converter

    out = workdir / "out" / "continued.musicxml"
    result = runner.invoke(app, ["compose", str(run), "--prime", str(music_dir / "melody.mid"), "--bars", "1",
                                 "--seed", "0", "--threads", "1", "--no-roll", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "notes" not in result.stdout and f"wrote {out}" in result.stdout
    assert len(converter.parse(str(out)).flatten().notes) >= 1


def test_compose_infill_through_the_cli(run, workdir, music_dir):
    from seqgen.music.files import read_midi

    out = workdir / "out" / "filled.mid"
    result = runner.invoke(app, ["compose", str(run), "--infill", str(music_dir / "english1.mid"), "--bars", "2-3",
                                 "--seed", "1", "--threads", "1", "--no-roll", "--out", str(out)])
    assert result.exit_code == 0, result.output
    first_bar = {n for n in read_midi(out).note_set(12) if n[0] < 36}  # 3/4: a bar is 36 steps
    assert first_bar == {n for n in read_midi(music_dir / "english1.mid").note_set(12) if n[0] < 36}


@pytest.mark.parametrize("args, message", [
    (["--bars", "5-8"], "range"),
    (["--infill", "x.mid"], "--bars 5-8"),
    (["--bars", "0"], "cannot read --bars"),
    (["--bars", "2", "--length", "10"], "not both"),
    (["--out", "piece.wav"], ".mid"),
    (["--infill", "missing.mid", "--bars", "1-2"], "does not exist"),
], ids=["range-without-infill", "infill-without-range", "zero-bars", "bars-and-length", "bad-suffix", "missing-file"])
def test_compose_user_errors_are_one_line(run, workdir, args, message):
    result = runner.invoke(app, ["compose", str(run), "--out", str(workdir / "out" / "x.mid"), *args]
                           if "--out" not in args else ["compose", str(run), *args])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


def test_compose_infill_on_a_causal_run_is_refused(folder, workdir, music_dir):
    out = workdir / "runs" / "causal"
    trained = runner.invoke(app, ["train", str(folder), "--size", "tiny", "--steps", "1", "--window", "32",
                                  "--batch", "2", "--threads", "1", "--objective", "causal", "--out", str(out), "-q"])
    assert trained.exit_code == 0, trained.output
    result = runner.invoke(app, ["compose", str(out), "--infill", str(music_dir / "english1.mid"), "--bars", "2-3",
                                 "--out", str(workdir / "out" / "no.mid")])
    assert result.exit_code == 1 and "objective causal" in result.stderr
    assert not (workdir / "out" / "no.mid").exists()


def test_eval_json_has_music_statistics(run):
    result = runner.invoke(app, ["eval", str(run), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["val_loss"] > 0 and report["music"]["compositions"] >= 1
    assert set(report["music"]["distance"]) >= {"pitch_class", "polyphony", "density", "overall"}
