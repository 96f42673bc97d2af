"""Fuzzing the music readers with damaged copies of real files: each copy is either read (and
tokenized) or skipped with a one-line reason, never a crash; training on a folder of them uses
the readable ones and lists the rest, or fails in one line when none is readable.

The damage is seeded (truncations, flipped bytes, an empty file, a header alone), so every run
sees the same files.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from seqgen.errors import SeqgenError
from seqgen.music.files import read_any
from seqgen.tokenizers.midi import MidiTokenizer

MUSIC = Path(__file__).resolve().parents[1].parent / "shared" / "music"
FLIPS = 12  # flipped-byte copies of each file (1 to 3 bytes each, anywhere)
HEADER_FLIPS = 4  # copies with one byte of the header chunk flipped (format, track count, division)
TOK = MidiTokenizer()


def damaged(data: bytes) -> dict[str, bytes]:
    """Seeded damaged copies of one MIDI file, by a name that says what was done."""
    out = {"intact": data, "empty": b"", "header": data[:14], "header-empty-track": data[:14] + b"MTrk\0\0\0\0",
           "cut-last-byte": data[:-1], "smpte-division": data[:12] + bytes([data[12] | 0x80]) + data[13:]}
    for frac in (0.1, 0.25, 0.5, 0.75, 0.9):
        out[f"cut{int(frac * 100)}"] = data[: max(1, int(len(data) * frac))]
    for seed in range(FLIPS + HEADER_FLIPS):
        rng = np.random.default_rng(seed)
        b = bytearray(data)
        at = rng.integers(8, 14, 1) if seed >= FLIPS else rng.integers(0, len(b), int(rng.integers(1, 4)))
        for pos in at.tolist():
            b[pos] ^= int(rng.integers(1, 256))
        out[f"flip{seed}"] = bytes(b)
    return out


def read_or_reason(path: Path):
    """(ids of each piece, None) when the file reads, (None, reason) when it is refused."""
    try:
        pieces = read_any(path)
        return [TOK.encode(p) for p in pieces], None
    except SeqgenError as e:  # refused, with a reason: fine
        return None, str(e)


@pytest.fixture(scope="module")
def damaged_folder(tmp_path_factory) -> Path:
    sources = sorted(MUSIC.glob("*.mid")) if MUSIC.is_dir() else []
    if not sources:
        pytest.skip(f"no MIDI files in {MUSIC} (the shared music files are not on this machine)")
    folder = tmp_path_factory.mktemp("damaged")
    for src in sources:
        for what, data in damaged(src.read_bytes()).items():
            (folder / f"{src.stem}-{what}.mid").write_bytes(data)
    return folder


@pytest.fixture(scope="module")
def results(damaged_folder) -> tuple[dict, list[str]]:
    """({file name: (ids or None, reason or None)}, [crashes]): reading or tokenizing any copy
    raised something other than a SeqgenError when crashes is not empty."""
    found, crashes = {}, []
    for path in sorted(damaged_folder.iterdir()):
        try:
            found[path.name] = read_or_reason(path)
        except Exception as e:  # noqa: BLE001 - any other exception is the bug this test hunts
            crashes.append(f"{path.name}: {type(e).__name__}: {e}")
    return found, crashes


@pytest.fixture(scope="module")
def outcomes(results) -> dict[str, str | None]:
    """File name -> None when it reads, else the reason it was refused."""
    found, crashes = results
    if crashes:
        pytest.fail("reading crashed on:\n" + "\n".join(crashes))
    return {name: reason for name, (_, reason) in found.items()}


def test_every_damaged_copy_is_read_or_skipped_with_a_one_line_reason(results):
    found, crashes = results
    assert not crashes, "reading crashed on:\n" + "\n".join(crashes)
    for name, (ids, reason) in found.items():
        assert (ids is None) != (reason is None), name
        if reason is not None:
            assert reason.strip() and len(reason.splitlines()) == 1, (name, reason)
            continue
        for seq in ids:  # what reads tokenizes into whole pieces that decode to notes
            assert seq[0] == TOK.bos_id and seq[-1] == TOK.eos_id, name
            assert ((seq >= 0) & (seq < TOK.vocab_size)).all(), name
            assert len(TOK.decode(seq)) > 0, f"{name} read, but its tokens hold no notes"
    outcome = {name: reason for name, (_, reason) in found.items()}
    # the intact files read; the empty ones and the header alone are refused
    assert all(outcome[n] is None for n in outcome if n.endswith("-intact.mid"))
    assert all(outcome[n] == "empty file" for n in outcome if n.endswith("-empty.mid"))
    assert all(outcome[n] is not None for n in outcome if n.endswith(("-header.mid", "-header-empty-track.mid")))
    refused = [n for n, r in outcome.items() if r is not None]
    assert len(refused) >= len(outcome) // 2  # the damage mostly breaks files, so the refusals are exercised


def test_reading_a_damaged_copy_gives_the_same_answer_twice(damaged_folder, outcomes):
    for name in sorted(outcomes)[::7]:
        _, reason = read_or_reason(damaged_folder / name)
        assert reason == outcomes[name], name


def test_damaged_musicxml_and_abc_are_read_or_skipped(tmp_path):
    sources = [MUSIC / n for n in ("st_anne.xml", "flute_scale.mxl", "zocharti_loch.abc") if (MUSIC / n).exists()]
    if not sources:
        pytest.skip(f"no MusicXML or ABC files in {MUSIC}")
    checked = 0
    for src in sources:
        data = src.read_bytes()
        rng = np.random.default_rng(0)
        flipped = bytearray(data)
        for pos in rng.integers(0, len(data), 3).tolist():
            flipped[pos] ^= 0xFF
        for what, copy in {"empty": b"", "half": data[: len(data) // 2], "flip": bytes(flipped)}.items():
            path = tmp_path / f"{src.stem}-{what}{src.suffix}"
            path.write_bytes(copy)
            ids, reason = read_or_reason(path)  # anything but a SeqgenError fails the test here
            assert (ids is None) != (reason is None)
            if reason is not None:
                assert reason.strip() and len(reason.splitlines()) == 1, (path.name, reason)
            else:
                assert all(len(seq) > 2 for seq in ids)
            checked += 1
    assert checked == 3 * len(sources)


runner = CliRunner()


def _train(folder: Path, out: Path):
    from seqgen.cli import app

    return runner.invoke(app, ["train", str(folder), "--steps", "5", "--size", "tiny", "--window", "16", "--batch", "2",
                               "--threads", "1", "--quiet", "--out", str(out)])


@pytest.mark.slow
def test_training_on_damaged_copies_uses_the_readable_ones_and_lists_the_rest(damaged_folder, outcomes, tmp_path):
    r = _train(damaged_folder, tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output
    refused = {n for n, reason in outcomes.items() if reason is not None}
    m = re.search(r"skipped (\d+) of (\d+)", r.stderr)
    assert m, r.stderr
    assert (int(m.group(1)), int(m.group(2))) == (len(refused), len(outcomes))
    listed = re.findall(r"^\s+(\S+\.mid): (.+)$", r.stderr, flags=re.MULTILINE)
    assert listed, r.stderr
    for name, reason in listed:  # the files it lists are the refused ones, with the same reasons
        assert name in refused and outcomes[name] == reason.strip(), (name, reason)
    assert {"last.pt", "config.json"} <= {p.name for p in (tmp_path / "run").iterdir()}


@pytest.mark.slow
def test_training_on_only_unreadable_copies_fails_in_one_line(damaged_folder, outcomes, tmp_path):
    folder = tmp_path / "unreadable"
    folder.mkdir()
    refused = sorted(n for n, reason in outcomes.items() if reason is not None)[::5]
    for name in refused:
        (folder / name).write_bytes((damaged_folder / name).read_bytes())
    r = _train(folder, tmp_path / "run")
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "no readable music" in lines[0], r.stderr
    assert not (tmp_path / "run" / "last.pt").exists()
