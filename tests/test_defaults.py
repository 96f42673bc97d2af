"""Defaults that fit the corpus: the split, the settings chosen from the corpus and the budget,
and what a run says when validation gets worse."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from seqgen.cli import app
from seqgen.config import TrainConfig, choose_settings
from seqgen.data.cache import TokenData
from seqgen.data.split import split
from seqgen.errors import ConfigError
from seqgen.tokenizers import CharTokenizer

runner = CliRunner()


def corpus_of_documents(n: int = 40) -> TokenData:
    lengths = np.random.default_rng(3).integers(50, 400, size=n)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    tokens = np.concatenate([np.full(length, i, dtype=np.uint16) for i, length in enumerate(lengths)])
    meta = {"documents": [[f"doc{i}", int(o), int(length)] for i, (o, length) in enumerate(zip(offsets, lengths))]}
    return TokenData(tokens, CharTokenizer.from_chars("ab"), "docs", meta)


def test_a_document_split_keeps_every_document_on_one_side():
    data = corpus_of_documents()
    parts = split(data, 0.1, "auto")
    assert parts.mode == "documents" and parts.held_out
    train_docs, val_docs = set(np.unique(parts.train)), set(np.unique(parts.val))
    assert not train_docs & val_docs  # each token value is its document: none on both sides
    assert len(parts.train) + len(parts.val) == len(data)
    assert 0.1 <= len(parts.val) / len(data) < 0.25
    held = sorted(int(name[3:]) for name in parts.held_out)
    assert held[-1] - held[0] > len(data.meta["documents"]) // 3  # drawn from across the corpus, not its end


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    data = corpus_of_documents()
    a, b = split(data, 0.1, "documents"), split(data, 0.1, "documents")
    assert a.held_out == b.held_out and np.array_equal(a.val, b.val)
    assert split(data, 0.1, "documents", seed=1).held_out != a.held_out


def test_one_text_keeps_the_tail_split():
    data = TokenData(np.arange(1000, dtype=np.uint16), CharTokenizer.from_chars("ab"), "one", {})
    parts = split(data, 0.1, "auto")
    assert parts.mode == "tail" and np.array_equal(parts.val, np.arange(900, 1000))


def test_settings_for_a_tiny_and_a_large_corpus():
    five_minutes = TrainConfig(time=300)
    tiny, why_tiny = choose_settings(five_minutes, train_tokens=20_000, kind="text")
    large, why_large = choose_settings(five_minutes, train_tokens=50_000_000, kind="text")
    assert tiny.dropout > large.dropout and tiny.weight_decay > large.weight_decay
    assert tiny.dim == 128 and large.dim is None  # the small corpus gets a narrower model
    assert large.dropout == 0.0 and "epochs" in why_large["dropout"] and "dim" in why_tiny
    music, why_music = choose_settings(five_minutes, train_tokens=200_000, kind="music")
    assert music.transpose == (-5, 6) and "transpose" in why_music
    assert choose_settings(five_minutes, 200_000, "text")[0].transpose == (0, 0)
    # what the user gave is kept
    mine, why_mine = choose_settings(TrainConfig(time=300, dropout=0.05, weight_decay=0.0, transpose=(0, 0), dim=300),
                                     20_000, "music")
    assert (mine.dropout, mine.weight_decay, mine.transpose, mine.dim) == (0.05, 0.0, (0, 0), 300)
    assert not {"dropout", "weight_decay", "transpose", "dim"} & set(why_mine)


def test_the_measured_speed_is_the_median_step_so_one_slow_step_changes_nothing():
    """The plan's speed comes from the median of the timed steps after the warm-up: a step the
    machine slowed (or the first ones, which build kernels) moves it not at all, and timing stops
    early when the steps are slow."""
    from seqgen.train.build import median_step

    def steps(durations):
        it = iter(durations)
        return lambda: next(it)

    calm = [9.0, 9.0] + [0.1] * 8
    slowed = [9.0, 9.0, 0.1, 0.1, 2.0, 0.1, 0.1, 0.1, 0.1, 0.1]
    assert median_step(steps(calm)) == median_step(steps(slowed)) == 0.1
    assert sum(slowed[2:]) / 8 > 0.3  # the mean would have read it three times slower
    took = []
    big = lambda: took.append(1.0) or 1.0  # noqa: E731  (a large model: a second per step)
    assert median_step(big) == 1.0 and len(took) == 2 + 3  # the warm-up, then the fewest timed steps


def test_the_choices_are_printed_and_stored(text_corpus, tmp_path):
    import json

    r = runner.invoke(app, ["train", str(text_corpus), "--steps", "3", "--size", "tiny", "--window", "16",
                            "--out", str(tmp_path / "r"), "--threads", "1"])
    assert r.exit_code == 0, r.output
    assert "dropout" in r.stderr and "epochs" in r.stderr and "split tail" in r.stderr
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert {"dropout", "weight_decay", "split"} <= set(config["choices"])
    assert config["train"]["dropout"] is not None and config["train"]["split"] == "tail"


@pytest.mark.slow
def test_a_run_that_overfits_says_so_and_patience_stops_it(tmp_path):
    corpus = tmp_path / "tiny.txt"
    letters = np.random.default_rng(0).integers(0, 26, size=3000)
    corpus.write_text("".join(chr(97 + int(i)) for i in letters))  # nothing to learn but noise to memorize
    args = ["train", str(corpus), "--window", "16", "--batch", "8", "--dim", "256", "--dropout", "0",
            "--weight-decay", "0", "--lr", "3e-2", "--steps", "400", "--eval-every", "0.05", "--threads", "1", "-q"]
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "got worse" in r.stderr and "overfits" in r.stderr and "--patience" in r.stderr
    stopped = runner.invoke(app, [*args, "--patience", "2", "--out", str(tmp_path / "b")])
    assert stopped.exit_code == 0, stopped.output
    assert "stopped early: 2 evaluations without a better validation loss" in stopped.stderr
    from seqgen import checkpoint as ckpt_io

    assert ckpt_io.load(tmp_path / "b" / "last.pt").step < 400
    # validation 5% over its best stops it whatever the training loss (a guard of 1e-9 never holds)
    turned = runner.invoke(app, [*args, "--patience", "2", "--stop-below", "1e-9", "--stop-rise", "0.05",
                                 "--out", str(tmp_path / "c")])
    assert turned.exit_code == 0, turned.output
    assert "stopped early" in turned.stderr and "over the best" in turned.stderr
    rose = ckpt_io.load(tmp_path / "c" / "last.pt")
    assert rose.step < 400 and rose.state.val > 1.05 * rose.state.best


def test_a_budget_far_beyond_the_corpus_evaluates_often_and_may_stop_early():
    page, why = choose_settings(TrainConfig(time=60), train_tokens=3_600, kind="text", tokens_per_s=100_000)
    assert (page.patience, page.eval_every, page.stop_below, page.stop_rise) == (5, 0.02, 0.7, None)
    assert "stop_rise" not in why and "over the best" not in why["patience"]  # validation swings here, and comes back
    assert "training loss is under 70%" in why["patience"] and "memorizes" in why["stop_below"]
    assert "epochs are more than a corpus this size can use" in why["patience"]
    assert choose_settings(TrainConfig(steps=5_000), 3_600, "text")[0].patience is None  # --steps is exact
    mine = choose_settings(TrainConfig(time=60, patience=9), 3_600, "text", 100_000)
    assert (mine[0].patience, mine[0].stop_below) == (9, None) and "patience" not in mine[1]  # validation alone
    often = choose_settings(TrainConfig(time=60, eval_every=0.05), 3_600, "text", 100_000)[0]
    assert (often.eval_every, often.patience) == (0.05, 2)  # still a tenth of the budget


def test_every_timed_run_reacts_to_validation():
    """Whatever the epoch count, a timed run left to seqgen stops once validation has not improved
    for a tenth of the budget while its training loss is clearly under the best validation loss."""
    for tokens in (5_000_000, 200_000):  # under one epoch; a few epochs (a multitrack corpus in 2 minutes)
        cfg, why = choose_settings(TrainConfig(time=120), tokens, "music", 10_000)
        assert (cfg.patience, cfg.eval_every, cfg.stop_below, cfg.stop_rise) == (2, 0.05, 0.7, 0.03)
        assert "improved for 10% of the budget" in why["patience"] and "under 70%" in why["patience"]
        assert "3% over the best" in why["patience"] and "turned" in why["stop_rise"]
        assert "memorizes" in why["stop_below"]
    given = choose_settings(TrainConfig(time=120, stop_below=0.8), 200_000, "music", 10_000)
    assert given[0].stop_below == 0.8 and given[0].patience == 2 and "stop_below" not in given[1]
    risen = choose_settings(TrainConfig(time=120, stop_rise=0.1), 200_000, "music", 10_000)
    assert (risen[0].stop_rise, risen[0].stop_below) == (0.1, 0.7) and "stop_rise" not in risen[1]
    assert choose_settings(TrainConfig(steps=100), 200_000, "music")[0].patience is None
    with pytest.raises(ConfigError, match="stop-below must be positive"):
        TrainConfig(stop_below=0)
    with pytest.raises(ConfigError, match="stop-rise must be positive"):
        TrainConfig(stop_rise=-0.1)


def test_a_chosen_patience_stops_a_run_that_memorizes_or_whose_validation_turned():
    from types import SimpleNamespace

    from seqgen.train.fit import Fit
    from seqgen.train_state import TrainState

    def out(train_loss, below=0.7, since_best=5, rise=None, val=2.01):
        t = SimpleNamespace(cfg=TrainConfig(patience=5, stop_below=below, stop_rise=rise),
                            state=TrainState(since_best=since_best, best=2.0, loss_ema=train_loss, val=val),
                            plan=SimpleNamespace(choices={}))  # the reasons text plays no part
        return Fit.patience_out(t)

    assert out(0.6) and not out(0.6, since_best=4)
    assert not out(1.9)  # validation is noisy but the model is not memorizing: train on
    assert out(1.9, below=None)  # --patience given by the user: validation alone decides
    assert out(1.7, below=0.9) and not out(1.85, below=0.9)  # --stop-below 0.9: 90% of the best
    # the last validation 3% over the best: validation itself has turned, whatever the training loss
    assert out(1.9, rise=0.03, val=2.07) and not out(1.9, rise=0.03, val=2.05)
    assert not out(1.9, rise=0.03, val=2.07, since_best=4)  # still within the patience
    assert out(0.6, rise=0.03, val=2.01)  # either guard stops it
    assert out(1.9, below=None, rise=0.03, val=2.07) and not out(1.9, below=None, rise=0.03, val=2.05)
    # a rise while the training loss is still over the best validation loss is noise, not overfitting
    assert not out(2.5, below=None, rise=0.03, val=2.3)
