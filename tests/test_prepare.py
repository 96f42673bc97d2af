"""Corpus preparation at scale: worker processes give exactly what one process gives, and text
read in chunks gives exactly what encoding it at once gives. Speed is measured by
bench/prepare_speed.py, not asserted here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

import seqgen.data.music as music_data
import seqgen.data.text as text_data
from seqgen.data.load import load_corpus
from seqgen.errors import CorpusError
from seqgen.tokenizers import CharTokenizer


def _fresh_cache(monkeypatch, tmp_path: Path, name: str) -> None:
    """An empty token cache, so each preparation reads the files (the key would find the last one)."""
    monkeypatch.setenv("SEQGEN_CACHE", str(tmp_path / f"cache-{name}"))


def _mixed_folder(root: Path, music_dir: Path) -> Path:
    """Good MIDI files, MusicXML, and broken files of every kind, interleaved in the sorted order."""
    folder = root / "mixed"
    folder.mkdir()
    good = ["english1.mid", "english2.mid", "melody.mid", "example.mid", "example_is_drum.mid"]
    for i in range(6):
        for name in good:
            shutil.copy(music_dir / name, folder / f"{i}_{name}")
    shutil.copy(music_dir / "st_anne.xml", folder / "2_st_anne.xml")  # a music21 file between MIDI batches
    (folder / "1_text.mid").write_text("this is not a MIDI file\n")
    (folder / "3_truncated.mid").write_bytes((music_dir / "english3.mid").read_bytes()[:300])
    (folder / "4_zero.mid").write_bytes(b"")
    (folder / "4_no_notes.mid").write_bytes(
        b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk\x00\x00\x00\x04\x00\xff\x2f\x00")
    (folder / "5_bad.xml").write_text("<score-partwise><part>")
    (folder / "5_notes.txt").write_text("not music at all\n")
    return folder


def _prepare(folder: Path, workers: int) -> tuple[np.ndarray, dict, list]:
    ticks: list = []
    data = music_data.load_music_corpus(str(folder), workers=workers, report=None,
                                        progress=lambda task, done, total: ticks.append((done, total)))
    return np.asarray(data.tokens), data.meta, ticks


@pytest.mark.parametrize("workers,batch", [(2, 3), (3, 32)], ids=["2-workers-batch-3", "3-workers-batch-32"])
def test_workers_give_the_serial_tokens_and_skip_list(tmp_path, music_dir, monkeypatch, workers, batch):
    folder = _mixed_folder(tmp_path, music_dir)
    _fresh_cache(monkeypatch, tmp_path, "serial")
    tokens, meta, ticks = _prepare(folder, workers=1)

    pooled = []
    real_pooled = music_data._pooled

    def spy(*args, **kwargs):
        pooled.append(args[2])  # the worker count
        yield from real_pooled(*args, **kwargs)

    monkeypatch.setattr(music_data, "_pooled", spy)
    monkeypatch.setattr(music_data, "POOL_MIN_MIDI", 4)
    monkeypatch.setattr(music_data, "MIDI_BATCH", batch)
    _fresh_cache(monkeypatch, tmp_path, f"pool-{workers}")
    p_tokens, p_meta, p_ticks = _prepare(folder, workers=workers)

    assert pooled == [workers], "the folder must have been read by worker processes"
    np.testing.assert_array_equal(p_tokens, tokens)
    assert p_meta == meta
    assert p_ticks == ticks == [(i + 1, len(ticks)) for i in range(len(ticks))]
    skipped = dict(meta["skipped"])
    assert set(skipped) == {"1_text.mid", "3_truncated.mid", "4_zero.mid", "4_no_notes.mid", "5_bad.xml", "5_notes.txt"}
    assert "not a MIDI file" in skipped["1_text.mid"] and "corrupt" in skipped["3_truncated.mid"]
    assert "empty file" in skipped["4_zero.mid"] and "no notes" in skipped["4_no_notes.mid"]
    assert "not a music file" in skipped["5_notes.txt"]
    assert [p[0] for p in meta["pieces"]][:2] == ["0_english1", "0_english2"] and len(meta["pieces"]) == 31


def test_batches_keep_the_file_order_and_give_music21_files_their_own_task():
    files = [Path(n) for n in ["a.mid", "b.mid", "c.xml", "d.mid", "e.txt", "f.mid", "g.abc", "h.krn", "i.mid"]]
    batches = music_data._batches(files, n_workers=1)
    assert [f for b in batches for f in b] == files
    assert all(len(b) == 1 for b in batches if b[0].suffix in (".xml", ".abc", ".krn"))
    big = [Path(f"{i:04d}.mid") for i in range(1000)]
    sizes = [len(b) for b in music_data._batches(big, n_workers=4)]
    assert max(sizes) == music_data.MIDI_BATCH and sum(sizes) == 1000


def test_a_worker_that_dies_is_one_error_naming_the_file(tmp_path, music_dir, monkeypatch):
    import os

    folder = tmp_path / "crash"
    folder.mkdir()
    for i in range(16):
        shutil.copy(music_dir / "melody.mid", folder / f"{i:02d}.mid")
    real = music_data.encode_file

    def crashing(path, config):
        if Path(path).name == "05.mid":
            os._exit(3)  # as a reader that segfaults; the forked worker inherits this patch
        return real(path, config)

    monkeypatch.setattr(music_data, "encode_file", crashing)
    monkeypatch.setattr(music_data, "POOL_MIN_MIDI", 4)
    monkeypatch.setattr(music_data, "MIDI_BATCH", 2)
    _fresh_cache(monkeypatch, tmp_path, "crash")
    with pytest.raises(CorpusError, match=r"^05\.mid crashes the music reader"):
        music_data.load_music_corpus(str(folder), workers=2, report=None)


# ---- text in chunks ----------------------------------------------------------------------------
PARTS = [
    "plain ASCII lines\nthat fill whole chunks on their own, " * 6,
    "then héllo wörld ♪ and 日本語, multi-byte characters across chunk edges; ",
    "a lone emoji 🎵 (four bytes) and back to ASCII\n" * 3,
]


@pytest.mark.parametrize("chunk", [1, 5, 64, 1 << 22], ids=lambda c: f"chunk-{c}")
def test_text_in_chunks_gives_the_tokens_of_the_whole_text(tmp_path, monkeypatch, chunk):
    path = tmp_path / "t.txt"
    text = "".join(PARTS)
    path.write_text(text, encoding="utf-8")
    whole = CharTokenizer.from_chars(set(text))
    expected = whole.encode(text)
    _fresh_cache(monkeypatch, tmp_path, "whole")
    key = text_data.corpus_key([path], "utf-8")

    monkeypatch.setattr(text_data, "CHUNK", chunk)
    _fresh_cache(monkeypatch, tmp_path, f"chunk-{chunk}")
    data = load_corpus(str(path))
    assert data.tokenizer == whole
    np.testing.assert_array_equal(np.asarray(data.tokens), expected)
    assert data.tokens.dtype == np.uint16
    assert text_data.corpus_key([path], "utf-8") == key  # the cache key does not depend on the chunk size


@pytest.mark.parametrize("chunk", [3, 40], ids=lambda c: f"chunk-{c}")
def test_a_folder_in_chunks_gives_the_tokens_of_the_joined_text(tmp_path, monkeypatch, chunk):
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, part in enumerate(PARTS):
        (folder / f"{i}.txt").write_text(part, encoding="utf-8")  # the first two lack a final newline
    joined = "".join(p if p.endswith("\n") else p + "\n" for p in PARTS)
    monkeypatch.setattr(text_data, "CHUNK", chunk)
    data = load_corpus(str(folder))
    np.testing.assert_array_equal(np.asarray(data.tokens), CharTokenizer.from_chars(set(joined)).encode(joined))


def test_a_given_vocabulary_encodes_in_chunks_and_names_what_it_lacks(tmp_path, monkeypatch):
    path = tmp_path / "t.txt"
    text = "".join(PARTS)
    path.write_text(text, encoding="utf-8")
    monkeypatch.setattr(text_data, "CHUNK", 7)
    wider = CharTokenizer.from_chars(set(text) | set("xyzΩ"))
    data = load_corpus(str(path), tokenizer=wider)
    np.testing.assert_array_equal(np.asarray(data.tokens), wider.encode(text))
    narrower = CharTokenizer.from_chars(set(text) - {"♪"})
    with pytest.raises(CorpusError, match="does not fit the model's vocabulary.*'♪'"):
        load_corpus(str(path), tokenizer=narrower)


def test_text_in_another_encoding_in_chunks(tmp_path, monkeypatch):
    path = tmp_path / "l.txt"
    text = "café crème brûlée, naïve façade\n" * 20
    path.write_bytes(text.encode("latin-1"))
    monkeypatch.setattr(text_data, "CHUNK", 4)
    data = load_corpus(str(path), encoding="latin-1")
    assert data.tokenizer.decode(data.tokens) == text


@pytest.mark.slow
def test_prepare_speed_bench_runs_and_agrees(music_dir, shakespeare, tmp_path):
    """The benchmark end to end at a tiny size (no timing asserts): both worker counts give one stream."""
    import json
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, str(root / "bench" / "prepare_speed.py"), "--midi-files", "40", "--text-mb", "0.2",
         "--json", "--tmp", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["how"] for r in rows] == ["workers=1", "workers=all", "load_corpus", "seqgen train --steps 1"]
    assert rows[0]["digest"] == rows[1]["digest"] and rows[0]["skipped"] == 0
    assert rows[2]["tokens"] == int(0.2 * (1 << 20)) and all(r["peak_rss_mb"] > 0 for r in rows)
    assert list(tmp_path.iterdir()) == []  # the inputs are removed
