"""Resume is a continuation: a run stopped by Ctrl-C (SIGINT, through the CLI) and resumed ends
with the same weights, best step, choices and evaluations as the same run left alone; a run that
stops early stops at the same step after a resume; old checkpoints still resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from seqgen import checkpoint as ckpt_io
from seqgen.records import EvalRecord, from_json

STEPS = 3000
COMMON = ["--size", "tiny", "--window", "16", "--batch", "4", "--threads", "1", "--seed", "3", "--quiet"]
CASES = {
    "lstm-carried": ["--model", "lstm", "--objective", "causal"],  # truncated BPTT: the state carried
    "transformer": ["--model", "transformer", "--objective", "causal"],
    "lstm-mixed": ["--model", "lstm", "--objective", "mixed"],  # stream rows and fill-in-the-middle rows
}


def seqgen(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "seqgen", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, **kw)


def evaluations(run: Path) -> list[tuple[int, float]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [(r.step, r.val_loss) for r in map(from_json, map(json.loads, lines)) if isinstance(r, EvalRecord)]


def stop_with_ctrl_c_after_first_checkpoint(proc: subprocess.Popen, run: Path) -> None:
    import time

    deadline = time.monotonic() + 120
    while not (run / "last.pt").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume with" in err


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_resumed_run_is_the_run_left_alone(text_corpus, tmp_path, case):
    resumed_run_matches(text_corpus, tmp_path, [*COMMON, *CASES[case], "--steps", STEPS])


@pytest.mark.slow
def test_a_resumed_music_run_keeps_each_rows_transposition(tmp_path):
    """Music is transposed and a stream row keeps its interval from window to window: the
    intervals are part of what a resume restores."""
    import numpy as np

    from seqgen.music.files import write_piece
    from seqgen.music.piece import Piece

    folder = tmp_path / "midi"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        notes = [(t * 240, 240, int(rng.integers(55, 75)), 80) for t in range(150)]
        write_piece(Piece.from_notes(notes), folder / f"piece{i}.mid")
    config = resumed_run_matches(folder, tmp_path, [*COMMON, "--model", "lstm", "--objective", "causal",
                                                    "--steps", 1500])
    assert "transpose" in config["choices"]
    assert len(ckpt_io.load(tmp_path / "cut" / "last.pt").state.batcher["held"]) == 4  # one per stream row


def resumed_run_matches(corpus: Path, tmp_path: Path, opts: list) -> dict:
    """Train ``corpus`` alone and cut by Ctrl-C then resumed; both end alike. Returns the config."""
    steps = int(opts[opts.index("--steps") + 1])
    alone = seqgen("train", corpus, "--out", tmp_path / "alone", *opts)
    assert alone.wait(timeout=300) == 0, alone.communicate()
    cut = tmp_path / "cut"
    stop_with_ctrl_c_after_first_checkpoint(seqgen("train", corpus, "--out", cut, *opts), cut)
    stopped_at = ckpt_io.load(cut / "last.pt").step
    assert 0 < stopped_at < steps, "the signal came after the end: no resume was tested"
    resumed = seqgen("train", corpus, "--out", cut, "--resume", "--quiet")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "older seqgen" not in err

    a, b = ckpt_io.load(tmp_path / "alone" / "last.pt"), ckpt_io.load(cut / "last.pt")
    assert a.step == b.step == steps
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[name]), f"{name} differs after the resume"
    assert a.state.best_step == b.state.best_step and a.state.best == b.state.best
    assert a.state.loss_ema == b.state.loss_ema
    config_a, config_b = (json.loads((r / "config.json").read_text()) for r in (tmp_path / "alone", cut))
    assert config_a["choices"] == config_b["choices"] and "dropout" in config_a["choices"]
    assert config_b["resumes"][0]["step"] == stopped_at
    assert evaluations(tmp_path / "alone") == evaluations(cut)
    return config_a


def test_an_early_stop_comes_at_the_same_step_after_a_resume(text_corpus, tmp_path):
    """--patience stops the run; stopped before that and resumed, it stops at the same step."""
    from seqgen.config import TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.train import Trainer

    data = load_corpus(str(text_corpus))
    cfg = TrainConfig(size="tiny", steps=4000, batch=4, window=16, threads=1, eval_every=0.01, patience=1,
                      lr=3e-2, seed=1)
    alone = Trainer(cfg, data, tmp_path / "alone").run()
    assert alone.early_stopped and alone.step < 4000, "the run did not stop early: a weak test"

    class CtrlC:  # what the CLI's SIGINT handler does: ask for a stop after the current step
        def on_step(self, record):
            if record.step == alone.step // 2:
                trainer.request_stop(signal.SIGINT)

    trainer = Trainer(cfg, data, tmp_path / "cut", callback=CtrlC())
    first = trainer.run()
    assert first.interrupted and first.step == alone.step // 2
    ckpt = ckpt_io.load(tmp_path / "cut" / "last.pt")
    again = Trainer(ckpt.train, data, tmp_path / "cut", resume=ckpt).run()
    assert again.early_stopped and again.step == alone.step and again.best_step == alone.best_step


@pytest.mark.parametrize("tokens, seconds, patience, rise", [(None, 120, 5, None), (100_000, 20, 2, 0.03)],
                         ids=["memorizing", "every-timed-run"])
def test_the_chosen_stop_survives_a_resume(text_corpus, tmp_path, tokens, seconds, patience, rise):
    """The early stop seqgen chose for a timed run (its patience, the training loss under which
    it may stop and the rise of validation at which it may stop) is saved in the run's config, so
    a resumed run stops by the same rule; a resume through the CLI keeps it unless the command
    gives --patience, --stop-below or --stop-rise."""
    from seqgen.cli.train import _FIELDS, _config
    from seqgen.config import TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.train import Trainer

    class Stop:
        def on_step(self, record):
            trainer.request_stop(signal.SIGINT)

    if tokens is not None:  # a corpus large enough to be read only a few times
        big = tmp_path / "big.txt"
        big.write_text((text_corpus.read_text() * (tokens // len(text_corpus.read_text()) + 1))[:tokens])
        text_corpus = big
    data = load_corpus(str(text_corpus))
    trainer = Trainer(TrainConfig(size="tiny", time=seconds, batch=4, window=16, threads=1), data, tmp_path / "r",
                      callback=Stop())
    below = 0.7
    assert (trainer.cfg.patience, trainer.cfg.stop_below) == (patience, below) and "stop_below" in trainer.plan.choices
    assert trainer.cfg.stop_rise == rise and ("stop_rise" in trainer.plan.choices) == (rise is not None)
    assert trainer.run().step == 1
    ckpt = ckpt_io.load(tmp_path / "r" / "last.pt")
    assert (ckpt.train.stop_below, ckpt.train.stop_rise) == (below, rise) and ckpt.choices == trainer.plan.choices
    resumed = Trainer(ckpt.train, data, tmp_path / "r", resume=ckpt)
    assert (resumed.cfg.patience, resumed.cfg.stop_below, resumed.cfg.stop_rise) == (patience, below, rise)
    assert resumed.plan.choices == trainer.plan.choices
    values = {name: f.default for name, f in _FIELDS.items()}
    kept = _config(tmp_path / "r", values, resume=True)[0]
    assert (kept.patience, kept.stop_below, kept.stop_rise) == (patience, below, rise)
    mine = _config(tmp_path / "r", {**values, "patience": 2, "stop_below": 1.5, "stop_rise": 0.1}, resume=True)[0]
    assert (mine.patience, mine.stop_below, mine.stop_rise) == (2, 1.5, 0.1)


def test_a_run_from_before_stop_below_keeps_its_guard(text_corpus, tmp_path):
    """A checkpoint whose plan says memorization_stop (seqgen before --stop-below) loads with the
    memorization guard it trained with."""
    from seqgen.config import MEMORIZED, TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.train import Trainer

    Trainer(TrainConfig(size="tiny", steps=2, batch=4, window=16, threads=1, patience=5, stop_below=MEMORIZED),
            load_corpus(str(text_corpus)), tmp_path / "r").run()
    payload = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert payload["plan"]["memorization_stop"] is True  # what an older seqgen reads
    payload["train_config"].pop("stop_below")
    torch.save(payload, tmp_path / "r" / "last.pt")
    assert ckpt_io.load(tmp_path / "r" / "last.pt").train.stop_below == MEMORIZED
    payload["plan"]["memorization_stop"] = False
    torch.save(payload, tmp_path / "r" / "last.pt")
    assert ckpt_io.load(tmp_path / "r" / "last.pt").train.stop_below is None


def test_an_old_checkpoint_resumes_with_a_note(text_corpus, tmp_path):
    """A checkpoint from before the state was saved whole (no "state" key) resumes; what it lacks
    starts fresh, said in one line."""
    from typer.testing import CliRunner

    from seqgen.cli import app

    run = tmp_path / "r"
    r = CliRunner().invoke(app, ["train", str(text_corpus), "--out", str(run), *COMMON, "--steps", "20"])
    assert r.exit_code == 0, r.output
    payload = torch.load(run / "last.pt", weights_only=True)
    state = payload.pop("state")
    payload.pop("plan")
    payload["optimizer"] = state["optimizer"]
    torch.save(payload, run / "last.pt")
    r = CliRunner().invoke(app, ["train", str(text_corpus), "--out", str(run), "--resume", "--steps", "30",
                                 "--quiet"])
    assert r.exit_code == 0, r.output
    assert "older seqgen" in r.stderr and "Traceback" not in r.output
    assert ckpt_io.load(run / "last.pt").step == 30
