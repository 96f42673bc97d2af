"""Faults lose nothing: SIGTERM, two writers, a full disk, a damaged checkpoint. Each case goes
through the CLI, where a user meets it (a real subprocess where a signal or a second process is
involved)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from seqgen import checkpoint as ckpt_io
from seqgen.cli import app

runner = CliRunner()
TINY = ["--size", "tiny", "--window", "16", "--batch", "2", "--threads", "1"]


def seqgen(*args: str | Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "seqgen", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the training ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} did not appear in {seconds}s")
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_saves_a_checkpoint_that_resumes(text_corpus, tmp_path, signum):
    run = tmp_path / "run"
    proc = seqgen("train", text_corpus, "--out", run, "--time", "5m", "--eval-every", "0.001", "-q", *TINY)
    wait_for(run / "metrics.jsonl", proc)  # training has started and evaluated once
    time.sleep(0.5)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, stderr
    assert f"stopped by {signal.Signals(signum).name}" in stderr and "--resume" in stderr
    saved = ckpt_io.load(run / "last.pt")
    assert saved.step > 0
    more = runner.invoke(app, ["train", str(text_corpus), "--out", str(run), "--resume", "--steps",
                               str(saved.step + 5), "-q"])
    assert more.exit_code == 0, more.output
    assert ckpt_io.load(run / "last.pt").step == saved.step + 5
    assert not list(run.glob(".*.tmp*"))


@pytest.mark.slow
def test_a_second_training_into_a_busy_run_folder_is_refused_and_a_dead_ones_lock_is_taken_over(text_corpus,
                                                                                                 tmp_path):
    run = tmp_path / "run"
    first = seqgen("train", text_corpus, "--out", run, "--time", "5m", "-q", *TINY)
    try:
        wait_for(run / "config.json", first)
        for args in (["--steps", "5"], ["--resume", "--steps", "5"]):
            second = runner.invoke(app, ["train", str(text_corpus), "--out", str(run), "-q", *TINY, *args])
            assert second.exit_code == 1, second.output
            assert f"being trained by process {first.pid}" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1
        first.send_signal(signal.SIGKILL)  # dies holding the lock, with no chance to clean up
        first.wait(timeout=30)
    finally:
        first.kill()
        first.communicate()
    assert (run / ".lock").exists()  # the lock file stays behind; its lock died with the process
    if (run / "last.pt").exists():
        again = runner.invoke(app, ["train", str(text_corpus), "--out", str(run), "--resume", "--steps", "100000",
                                    "-q", "--threads", "1"])
    else:
        again = runner.invoke(app, ["train", str(text_corpus), "--out", str(run), "--steps", "3", "-q", *TINY])
    assert again.exit_code == 0, again.output


def test_a_full_disk_while_saving_stops_with_one_line_and_keeps_the_last_good_checkpoint(text_corpus, tmp_path,
                                                                                         monkeypatch):
    import torch

    real_save = torch.save
    calls = []

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) >= 3:  # last.pt and best.pt of the first evaluation go through; then the disk is full
            with open(path, "wb") as fh:
                fh.write(b"PK\x03\x04 partial")  # torch had begun writing when the disk filled up
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt_io.torch, "save", save)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(text_corpus), "--out", str(run), "--steps", "20", "--eval-every", "0.25",
                                 "-q", *TINY])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert "No space left on device" in lines[0] and str(run / "last.pt") in lines[0]
    assert "last good checkpoint" in lines[0] and "step 5" in lines[0]
    assert not list(run.glob(".*.tmp*"))  # no temp file left behind
    monkeypatch.setattr(ckpt_io.torch, "save", real_save)
    assert ckpt_io.load(run / "last.pt").step == 5  # the previous file is intact


def test_a_truncated_checkpoint_is_reported_as_such(text_corpus, tmp_path):
    run = tmp_path / "run"
    assert (
        runner.invoke(app, ["train", str(text_corpus), "--out", str(run), "--steps", "3", "-q", *TINY]).exit_code == 0
    )
    data = (run / "last.pt").read_bytes()
    (run / "best.pt").unlink()
    (run / "last.pt").write_bytes(data[: len(data) // 2])
    result = runner.invoke(app, ["sample", str(run)])
    assert result.exit_code == 1 and "corrupt or truncated" in result.stderr


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_a_damaged_token_cache_is_rebuilt_with_a_note(text_corpus, tmp_path, monkeypatch, damage):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SEQGEN_CACHE", str(cache))
    args = ["train", str(text_corpus), "--steps", "2", "-q", *TINY]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    (binary,) = (cache / "tokens").glob("*.bin")
    data = binary.read_bytes()
    binary.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"garbage!" + data[8:])
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    assert "token cache" in second.stderr and "damaged" in second.stderr and "rebuilding" in second.stderr
    assert binary.read_bytes() == data  # rebuilt to the same content
    third = runner.invoke(app, [*args, "--out", str(tmp_path / "c")])
    assert third.exit_code == 0 and "rebuilding" not in third.stderr
