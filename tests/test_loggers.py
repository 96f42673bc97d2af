"""Loggers are callbacks: metrics.jsonl always, TensorBoard scalars with --log tensorboard, the same
values in both; a missing extra is one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from seqgen.cli import app
from seqgen.records import EvalRecord, from_json

TINY = ["--size", "tiny", "--window", "16", "--batch", "4", "--threads", "1", "--steps", "60", "--quiet"]


def test_tensorboard_scalars_match_metrics_jsonl(text_corpus, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard's EventAccumulator reads the event files back")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(text_corpus), "--out", str(run), "--log", "tensorboard", *TINY])
    assert r.exit_code == 0, r.output
    records = [from_json(json.loads(line)) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in records if isinstance(x, EvalRecord)]
    assert len(evals) == 10 and len(records) > len(evals)
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    val = [(e.step, e.value) for e in acc.Scalars("val/loss")]
    assert val == [(x.step, pytest.approx(x.val_loss, rel=1e-6)) for x in evals]
    train = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert train == [(x.step, pytest.approx(x.loss, rel=1e-6)) for x in records]
    assert [e.step for e in acc.Scalars("val/bits")] == [x.step for x in evals]


def test_a_missing_tensorboard_extra_is_one_line(text_corpus, tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tensorboardx(name, *args, **kw):
        if name.split(".")[0] == "tensorboardX":
            raise ImportError("No module named 'tensorboardX'")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tensorboardx)
    r = CliRunner().invoke(app, ["train", str(text_corpus), "--out", str(tmp_path / "r"), "--log", "tensorboard",
                                 *TINY])
    assert r.exit_code == 1 and "seqgen[tensorboard]" in r.stderr and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["train", str(text_corpus), "--out", str(tmp_path / "s"), "--log", "wandb", *TINY])
    assert r.exit_code == 1 and "unknown --log wandb" in r.stderr
