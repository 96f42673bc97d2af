"""Token cache, batching, the training loop, checkpoints and evaluation."""

import math

import numpy as np
import pytest
import torch

from seqgen import checkpoint as ckpt_io
from seqgen.config import TrainConfig, choose_settings, parse_duration
from seqgen.data.batches import StreamBatcher, random_windows
from seqgen.data.cache import cache_dir
from seqgen.data.load import load_corpus
from seqgen.errors import ConfigError
from seqgen.losses import infill_loss, stream_loss, windowed_loss
from seqgen.models import build_model, make_config
from seqgen.objectives import FimIds
from seqgen.train import Trainer, lr_at


def test_tokens_are_cached_by_content(text_corpus, tmp_path):
    first = load_corpus(str(text_corpus))
    assert isinstance(first.tokens, np.memmap)
    assert first.tokenizer.decode(first.tokens[:14]) == "First Citizen:"
    files = sorted(cache_dir().glob("*.bin"))
    mtime = [f.stat().st_mtime_ns for f in files]
    copy = tmp_path / "copy.txt"
    copy.write_bytes(text_corpus.read_bytes())
    again = load_corpus(str(copy))  # same content, other name: the cache answers
    assert sorted(cache_dir().glob("*.bin")) == files and [f.stat().st_mtime_ns for f in files] == mtime
    np.testing.assert_array_equal(np.asarray(again.tokens), np.asarray(first.tokens))
    text_corpus.write_text(text_corpus.read_text() + "new words")
    assert len(load_corpus(str(text_corpus))) == len(first) + len("new words")


def test_folder_corpus_joins_files(tmp_path):
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta\n")
    (tmp_path / ".hidden").write_text("zzz")
    data = load_corpus(str(tmp_path))
    assert data.tokenizer.decode(data.tokens) == "alpha\nbeta\n"


def test_a_corpus_larger_than_a_read_chunk(tmp_path, monkeypatch):
    import seqgen.data.text as data_mod

    monkeypatch.setattr(data_mod, "CHUNK", 7)  # multi-byte characters straddle chunk edges
    path = tmp_path / "u.txt"
    text = "héllo wörld ♪♪ " * 20
    path.write_text(text)
    data = load_corpus(str(path))
    assert data.tokenizer.decode(data.tokens) == text


def test_split_is_the_last_fraction(text_corpus):
    data = load_corpus(str(text_corpus))
    train, val = data.split(0.1)
    assert len(train) + len(val) == len(data)
    assert len(val) == round(0.1 * len(data))
    np.testing.assert_array_equal(val, data.tokens[-len(val):])


def test_random_windows_and_stream_batches():
    tokens = np.arange(1000)
    rng = np.random.default_rng(0)
    w = random_windows(tokens, 4, 16, rng)
    assert w.shape == (4, 17) and (np.diff(w, axis=1) == 1).all()
    sb = StreamBatcher(tokens, 4, 16, rng)
    a, reset_a = sb.next()
    b, reset_b = sb.next()
    assert not reset_b.any()
    np.testing.assert_array_equal(b[:, 0], a[:, -1])  # each row continues where it stopped


def test_durations():
    assert parse_duration("90s") == 90 and parse_duration("3m") == 180 and parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(ConfigError):
        parse_duration("3 parsecs")


def test_schedule_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(lr=1e-3, warmup=10, min_lr_ratio=0.1, steps=100)
    assert lr_at(cfg, 0, 0.0) == pytest.approx(1e-4)
    assert lr_at(cfg, 9, 0.09) == pytest.approx(1e-3, rel=0.05)
    assert lr_at(cfg, 99, 1.0) == pytest.approx(1e-4)


@pytest.mark.parametrize("model_type", ["lstm", "transformer"])
def test_training_lowers_the_validation_loss(text_corpus, tmp_path, model_type):
    data = load_corpus(str(text_corpus))
    cfg = TrainConfig(model=model_type, size="tiny", steps=120, batch=8, window=32, eval_every=0.5, seed=1,
                      lr=1e-2, objective="causal")
    trainer = Trainer(cfg, data, tmp_path / "run")
    before = trainer.evaluate()
    result = trainer.run()
    assert result.best_val_loss < before - 0.5
    assert math.isclose(before, math.log(data.tokenizer.vocab_size), rel_tol=0.25)


def test_time_budget_ends_the_run(text_corpus, tmp_path):
    data = load_corpus(str(text_corpus))
    cfg = TrainConfig(size="tiny", time=1.5, batch=4, window=16)
    result = Trainer(cfg, data, tmp_path / "run").run()
    assert 1.5 <= result.elapsed < 5 and result.step > 0
    assert (tmp_path / "run" / "best.pt").exists()


def test_same_seed_same_run(text_corpus, tmp_path):
    data = load_corpus(str(text_corpus))
    cfg = TrainConfig(size="tiny", steps=15, batch=4, window=16, seed=5)
    a = Trainer(cfg, data, tmp_path / "a").run()
    b = Trainer(cfg, data, tmp_path / "b").run()
    assert a.train_loss == b.train_loss and a.best_val_loss == b.best_val_loss


def test_checkpoint_round_trip(text_corpus, tmp_path):
    data = load_corpus(str(text_corpus))
    cfg = TrainConfig(model="transformer", size="tiny", steps=3, batch=2, window=16)
    Trainer(cfg, data, tmp_path / "r").run()
    payload = torch.load(tmp_path / "r" / "last.pt", weights_only=True)  # plain data only
    assert payload["model_config"]["type"] == "transformer" and payload["tokenizer"]["type"] == "char"
    ckpt = ckpt_io.load(tmp_path / "r" / "last.pt")
    chosen, _ = choose_settings(cfg, len(data), "text")
    assert ckpt.train == chosen.replace(split="tail") and ckpt.train.lr is not None
    assert ckpt.train.dropout is not None and ckpt.train.weight_decay is not None  # stored resolved
    assert ckpt.tokenizer == data.tokenizer and ckpt.step == 3
    x = torch.as_tensor(np.asarray(data.tokens[:20], dtype=np.int64))[None]
    fresh = build_model(ckpt.model.config)
    fresh.load_state_dict(payload["weights"])
    fresh.eval()
    torch.testing.assert_close(fresh(x)[0], ckpt.model(x)[0])
    assert not [p for p in (tmp_path / "r").iterdir() if ".tmp" in p.name]


def test_stream_loss_matches_one_long_forward_and_windowed_differs():
    torch.manual_seed(0)
    model = build_model(make_config("lstm", 30, "tiny", mid_id=27)).eval()
    tokens = np.random.default_rng(0).integers(0, 26, 300)
    x = torch.as_tensor(tokens)[None]
    with torch.no_grad():
        logits, _ = model(x[:, :-1])
        direct = torch.nn.functional.cross_entropy(logits[0], x[0, 1:]).item()
    assert stream_loss(model, tokens, chunk=37) == pytest.approx(direct, rel=1e-5)
    assert windowed_loss(model, tokens, window=64) != pytest.approx(direct, rel=1e-6)
    # three pieces read side by side: each piece is one long forward from empty context
    piece = 299 // 3
    with torch.no_grad():
        parts = [torch.nn.functional.cross_entropy(model(x[:, k * piece : (k + 1) * piece])[0][0],
                                                   x[0, k * piece + 1 : (k + 1) * piece + 1], reduction="sum").item()
                 for k in range(3)]
    assert stream_loss(model, tokens, chunk=37, streams=3) == pytest.approx(sum(parts) / (3 * piece), rel=1e-5)
    loss = infill_loss(model, tokens, FimIds(26, 27, 28, 29), window=32, examples=8)
    assert math.isfinite(loss) and loss > 0


def test_interrupt_saves_a_checkpoint_that_resumes(text_corpus, tmp_path):
    data = load_corpus(str(text_corpus))
    cfg = TrainConfig(size="tiny", steps=50, batch=4, window=16)

    class StopAt7:
        def on_start(self, info): pass
        def on_eval(self, info): pass
        def on_step(self, info):
            if info.step == 7:
                raise KeyboardInterrupt

    result = Trainer(cfg, data, tmp_path / "r", callback=StopAt7()).run()
    assert result.interrupted and result.step == 7
    ckpt = ckpt_io.load(tmp_path / "r" / "last.pt")
    assert ckpt.step == 7 and ckpt.state.optimizer["state"]
    resumed = Trainer(ckpt.train, data, tmp_path / "r", resume=ckpt).run()
    assert resumed.step == 50 and not resumed.interrupted


def test_defaults_fill_only_what_the_user_left_open():
    auto = TrainConfig(time=120).resolved()
    assert (auto.size, auto.batch, auto.lr, auto.dim) == ("small", 8, 1e-2, None)
    assert TrainConfig(time=120, model="transformer").resolved().lr == 1e-3
    assert TrainConfig(time=600, dim=128).resolved().dim == 128
    assert TrainConfig(time=600, size="tiny").resolved().size == "tiny"
    assert TrainConfig(time=600, batch=32).resolved().batch == 32
    assert TrainConfig(time=600, lr=3e-3).resolved().lr == 3e-3
