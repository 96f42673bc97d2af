"""The promise where users meet it: `seqgen sample`, `infill` and `compose` on an ONNX bundle run
in a process where `import torch` fails (as on a machine with onnxruntime and no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_export import WINDOW, make_run

# A finder that refuses torch (and music21, which a bundle's compose path never needs), then the CLI.
NO_TORCH = """
import sys
class _Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'music21'):
            raise ImportError(f'{name} is not installed here')
        return None
sys.meta_path.insert(0, _Refuse())
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit('torch was importable')
from seqgen.cli import main
sys.argv = ['seqgen'] + sys.argv[1:]
main()
"""


def seqgen_without_torch(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          timeout=180, cwd=cwd)


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory) -> Path:
    from conftest import TEXT

    from seqgen.export import export_run

    root = tmp_path_factory.mktemp("text")
    corpus = root / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run = make_run(root, "lstm", corpus)
    export_run(run, root / "bundle", loss_tokens=0)
    return root / "bundle"


def midi_bundle(root: Path, version: int) -> Path:
    """A bundle of an untrained tiny LSTM music run with the MIDI tokenizer of ``version``."""
    import torch

    from seqgen import checkpoint as ckpt_io
    from seqgen.config import TrainConfig
    from seqgen.export import export_run
    from seqgen.models import build_model, make_config
    from seqgen.tokenizers.midi import MidiTokenizer

    tok = MidiTokenizer(version=version)
    torch.manual_seed(0)
    model = build_model(make_config("lstm", tok.vocab_size, "tiny", mid_id=tok.mid_id))
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=tok, train=TrainConfig(window=WINDOW)),
                 root / "run" / ckpt_io.BEST)
    export_run(root / "run", root / "bundle", loss_tokens=0)
    return root / "bundle"


@pytest.fixture(scope="module")
def music_bundle(tmp_path_factory) -> Path:
    return midi_bundle(tmp_path_factory.mktemp("music"), version=1)


def test_the_guard_refuses_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", NO_TORCH.split("from seqgen")[0] + "print('ok')"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_sample_and_infill_from_a_bundle_without_torch(text_bundle, tmp_path):
    res = seqgen_without_torch("sample", text_bundle, "--prompt", "All", "--length", "30", "--seed", "1",
                               "--threads", "2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("All") and len(res.stdout) > 30
    res = seqgen_without_torch("infill", text_bundle, "--prefix", "All", "--suffix", "speak.", "--json",
                               "--seed", "1", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert '"middle"' in res.stdout


def test_compose_from_a_music_bundle_without_torch(music_bundle, tmp_path):
    out = tmp_path / "piece.mid"
    res = seqgen_without_torch("compose", music_bundle, "--bars", "2", "--seed", "0", "--out", out, "--no-roll",
                               cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert out.is_file() and out.read_bytes()[:4] == b"MThd"


def test_sampling_controls_score_and_interactive_from_a_bundle_without_torch(text_bundle, tmp_path):
    import json
    import math

    args = ["sample", text_bundle, "--prompt", "A", "--length", "40", "--seed", "3", "--json", "--logprobs",
            "--min-p", "0.05", "--repetition-penalty", "1.2", "--no-repeat-ngram", "6"]
    res = seqgen_without_torch(*args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (row,) = json.loads(res.stdout)
    assert row["finish_reason"] == "length" and len(row["logprobs"]) == len(row["text"]) == 40
    stop = row["text"][10:12]
    res = seqgen_without_torch(*args, "--stop", stop, cwd=tmp_path)
    (cut,) = json.loads(res.stdout)
    assert cut["text"] == row["text"][: row["text"].index(stop)] and cut["finish_reason"] == "stop"
    (tmp_path / "s.txt").write_text("A" + row["text"], encoding="utf-8")
    res = seqgen_without_torch("score", text_bundle, tmp_path / "s.txt", "--json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert math.isclose(json.loads(res.stdout)["nats"], -sum(row["logprobs"]), rel_tol=1e-4)
    res = subprocess.run([sys.executable, "-c", NO_TORCH, "sample", str(text_bundle), "--interactive", "--temp", "0",
                          "--length", "10"], input="All\n/length 3\nAll\n", capture_output=True, text=True,
                         timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(res.stdout) == 10 + 1 + 3 + 1 and res.stdout.endswith("\n" + res.stdout[:3] + "\n")


def test_compose_with_min_p_and_the_guard_from_a_music_bundle_without_torch(music_bundle, tmp_path):
    out = tmp_path / "piece.mid"
    res = seqgen_without_torch("compose", music_bundle, "--bars", "2", "--seed", "0", "--out", out, "--no-roll",
                               "--min-p", "0.05", "--no-repeat-ngram", "3", "--repetition-penalty", "1.2", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert out.is_file() and out.read_bytes()[:4] == b"MThd"


def _as_a_shell_starts_it() -> None:
    """A terminal's shell starts a command with Ctrl-C at its default action; a test run started
    in the background (``cmd &`` in a script) has it ignored, and the child would inherit that."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("key", ["ctrl-c", "ctrl-d"])
def test_interactive_in_a_terminal_ends_on_ctrl_c_and_ctrl_d(text_bundle, tmp_path, key):
    """Through a pseudo terminal (readline on): an answer streams, then the key ends it, exit 0."""
    import os
    import pty
    import select
    import signal
    import time

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", NO_TORCH, "sample", str(text_bundle), "-i",
                             "--temp", "0", "--length", "12"], stdin=slave, stdout=slave, stderr=slave, cwd=tmp_path,
                            close_fds=True, preexec_fn=_as_a_shell_starts_it)
    os.close(slave)
    seen = b""

    def read_until(done, limit: float = 60) -> None:
        nonlocal seen
        end = time.monotonic() + limit
        while not done() and time.monotonic() < end:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break

    try:
        read_until(lambda: b"> " in seen)
        os.write(master, b"All\n")
        read_until(lambda: seen.count(b"> ") >= 2)  # the answer, then the prompt again
        answer = seen.split(b"> ")[1]
        assert answer.startswith(b"All") and len(answer) > len(b"All\r\n") + 12, seen
        if key == "ctrl-c":
            # CPython's readline writes the prompt, then waits in select(): a SIGINT that lands in
            # between is only seen at the next key, so press Ctrl-C as a person would, a moment
            # after the prompt (on a loaded machine the test would otherwise land in that gap)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
        else:
            os.write(master, b"\x04")
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler prints where each thread is
            read_until(lambda: False, 2)
            raise AssertionError(f"the session did not end; the terminal showed {seen!r}") from None
        assert code == 0, seen
        read_until(lambda: False, 0.5)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert b"Traceback" not in seen and b"error" not in seen, seen


def test_serve_a_bundle_without_torch(text_bundle):
    """`seqgen serve BUNDLE` where torch and music21 cannot be imported: a completion over HTTP."""
    httpx = pytest.importorskip("httpx", reason="httpx (dev extra) is not installed")
    pytest.importorskip("starlette", reason="the serve extra is not installed")
    from serve_util import start_server

    s = start_server(text_bundle, code=NO_TORCH)
    try:
        r = httpx.post(s.url + "/v1/completions", json={"prompt": "All", "max_tokens": 12, "seed": 1}, timeout=60)
        assert r.status_code == 200, r.text
        assert len(r.json()["choices"][0]["text"]) == 12
        with httpx.stream("POST", s.url + "/v1/completions", timeout=60,
                          json={"prompt": "All", "max_tokens": 5, "stream": True}) as resp:
            assert [x for x in resp.iter_lines() if x][-1] == "data: [DONE]"
    finally:
        s.stop()
    assert s.proc.returncode == 0


@pytest.fixture(scope="module")
def tracks_bundle(tmp_path_factory) -> Path:
    """A bundle of a music run with tracks and controls (version 3, what new runs get), random weights."""
    return midi_bundle(tmp_path_factory.mktemp("tracks"), version=3)


def test_harmonize_fill_and_controls_from_a_bundle_with_tracks_without_torch(tracks_bundle, tmp_path):
    from seqgen.music.files import read_midi, write_piece
    from seqgen.music.piece import Piece, Track

    notes = [[i * 480, 480, 67 + (i % 5)] for i in range(8)] + [[i * 960, 960, 48] for i in range(4)]
    song = Piece.from_notes(notes)
    song.track = np.array([0] * 8 + [1] * 4)
    song.tracks = [Track("Melody", 0), Track("Bass", 33)]
    path = write_piece(song, tmp_path / "song.mid")
    res = seqgen_without_torch("compose", tracks_bundle, "--harmonize", path, "--melody-track", "0", "--seed", "0",
                               "--out", tmp_path / "h.mid", "--no-roll", "--no-check-copies", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    made = read_midi(tmp_path / "h.mid")
    assert made.tracks[0].name == "Melody" and len(made.tracks) >= 2
    assert {(t, p) for t, p, k in zip(made.time.tolist(), made.pitch.tolist(), made.track.tolist()) if k == 0} == \
        {(n[0], n[2]) for n in notes[:8]}
    res = seqgen_without_torch("compose", tracks_bundle, "--tracks", path, "--fill", "bass", "--seed", "0",
                               "--out", tmp_path / "f.mid", "--no-roll", "--no-check-copies", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    filled = read_midi(tmp_path / "f.mid")
    assert sorted(filled.pitch[filled.track == 0].tolist()) == sorted(n[2] for n in notes[:8])
    res = seqgen_without_torch("compose", tracks_bundle, "--key", "D minor", "--meter", "3/4", "--instruments",
                               "piano,violin", "--bars", "2", "--seed", "0", "--out", tmp_path / "c.mid",
                               "--no-check-copies", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "asked: key D minor, meter 3/4, instruments piano,violin" in res.stdout
