"""The output layer that scores only the tokens a run's batches can hold (``VocabHead``): the same
softmax over the whole vocabulary, the training loss taken from its rows, music runs that get it,
text runs that do not, and checkpoints, bundles and ``--init`` that carry it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqgen.config import MODEL_TYPES
from seqgen.models import build_model, head_ids_for, make_config
from seqgen.models.base import VocabHead
from seqgen.tokenizers.midi import MidiTokenizer

V, MID = 23, 21
LISTED = [0, 1, 2, 3, 5, 8, 13, MID]


def test_vocab_head_is_one_softmax_over_the_whole_vocabulary():
    torch.manual_seed(0)
    head = VocabHead(6, V, LISTED)
    assert head.weight.shape == (len(LISTED) + 1, 6)
    x = torch.randn(2, 5, 6)
    logits = head(x)  # (2, 5, V)
    assert logits.shape == (2, 5, V)
    w, b = head.full()
    assert torch.allclose(logits, x @ w.T + b, atol=1e-6)
    assert torch.allclose(logits.softmax(-1).sum(-1), torch.ones(2, 5), atol=1e-6)
    rest = [i for i in range(V) if i not in LISTED]
    assert torch.allclose(logits[..., rest], logits[..., rest[:1]].expand(-1, -1, len(rest)))
    # the unlisted tokens together weigh what the shared row alone would among the rows
    rows = torch.nn.Linear.forward(head, x)
    shared = rows.softmax(-1)[..., -1]
    assert torch.allclose(logits.softmax(-1)[..., rest].sum(-1), shared, atol=1e-6)


def test_vocab_head_loss_is_the_cross_entropy_of_its_logits():
    torch.manual_seed(1)
    head = VocabHead(6, V, LISTED)
    x = torch.randn(3, 7, 6)
    targets = torch.randint(0, V, (3, 7))
    targets[0, :3] = torch.tensor([4, 6, 22])  # tokens off the list: they cost their share of the shared row
    want = F.cross_entropy(head(x).reshape(-1, V), targets.reshape(-1))
    assert torch.allclose(head.loss(x, targets), want, atol=1e-5)
    head.loss(x, targets).backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0


def test_every_token_listed_is_a_plain_layer():
    head = VocabHead(4, V, list(range(V)))
    assert head.index is None and head.weight.shape == (V, 4)


@pytest.mark.parametrize("model_type,kw", [(m, {}) for m in MODEL_TYPES]
                         + [("lstm", {"head_ids": LISTED}), ("lstm-attn", {"head_ids": LISTED})],
                         ids=list(MODEL_TYPES) + ["lstm-listed", "lstm-attn-listed"])
def test_forward_with_targets_gives_the_loss_of_its_logits(model_type, kw):
    torch.manual_seed(0)
    model = build_model(make_config(model_type, V, "tiny", mid_id=MID, **kw)).eval()
    x = torch.randint(0, V, (2, 12))
    y = torch.randint(0, V, (2, 12))
    with torch.no_grad():
        logits, state = model(x)
        loss, state2 = model(x, targets=y)
    assert loss.dim() == 0
    assert torch.allclose(loss, F.cross_entropy(logits.reshape(-1, V), y.reshape(-1)), atol=1e-5)
    for a, b in zip(state, state2):
        assert torch.equal(a, b)


def test_only_untied_heads_of_mostly_unused_vocabularies_are_narrowed():
    few = list(range(10))
    assert head_ids_for("lstm", 100, few) == few
    assert head_ids_for("lstm-attn", 100, few) == few
    assert head_ids_for("transformer", 100, few) is None  # its head is its embedding
    assert head_ids_for("lstm", 100, range(90)) is None  # most of the vocabulary: nothing to save
    assert head_ids_for("lstm", 100, None) is None


def test_music_output_ids_reach_what_transposition_makes():
    tok = MidiTokenizer(version=3)
    p0, k0 = tok.offset["Pitch"], tok.offset["Key"]
    ids = np.array([1, tok.offset["Bar"], p0 + 60, p0 + 67, k0 + 12 + 2, 2])  # C4, G4, D minor
    plain = tok.output_ids(ids, None)
    assert set(plain) == set(ids.tolist()) | set(range(6))  # its own ids and the sentinels
    moved = set(tok.output_ids(ids, (-5, 6)).tolist())
    assert {p0 + p for p in range(60, 68)} <= moved  # every pitch between the lowest and the highest
    assert p0 + 59 not in moved and p0 + 68 not in moved  # transposition stays in the corpus's range
    assert {k0 + 12 + k for k in range(12)} <= moved  # every minor key
    assert not {k0 + k for k in range(12)} & moved  # no major key: the corpus has none


def _chorale_midi(folder: Path) -> Path:
    from music21 import corpus

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bwv66.6", "bwv269"):
        corpus.parse(f"bach/{name}").write("midi", fp=str(folder / f"{name}.mid"))
    return folder


def test_a_music_run_narrows_its_head_and_a_text_run_does_not(tmp_path, text_corpus):
    from seqgen.checkpoint import open_checkpoint, run_data
    from seqgen.config import TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.losses import stream_loss
    from seqgen.train import Trainer

    cfg = TrainConfig(model="lstm", size="tiny", steps=3, batch=4, window=32, device="cpu", threads=1,
                      eval_tokens=256, warmup=1)
    music = load_corpus(str(_chorale_midi(tmp_path / "midi")), report=None, progress=None)
    Trainer(cfg.replace(transpose=(-2, 2)), music, tmp_path / "music").run()
    ckpt = open_checkpoint(tmp_path / "music", "best")
    ids = ckpt.model.config.head_ids
    assert ids is not None and len(ids) + 1 < ckpt.tokenizer.vocab_size // 2
    assert ckpt.model.head.weight.shape[0] == len(ids) + 1
    _, parts = run_data(ckpt)
    assert set(np.unique(np.asarray(parts.train)).tolist()) <= set(ids)  # every token it trained on
    saved = json.loads((tmp_path / "music" / "config.json").read_text())
    assert saved["model"]["head_ids"] == ids
    # a held-out token the batches never hold is scored (the shared row), never infinite
    drum = ckpt.tokenizer.offset["Drum"] + 36
    assert drum not in ids
    loss = stream_loss(ckpt.model, np.array([1, drum, drum, 2]), chunk=4)
    assert math.isfinite(loss) and loss > math.log(ckpt.tokenizer.vocab_size - len(ids))

    text = load_corpus(str(text_corpus), report=None, progress=None)
    Trainer(cfg, text, tmp_path / "text").run()
    assert open_checkpoint(tmp_path / "text", "best").model.config.head_ids is None


def test_init_from_a_narrowed_run_keeps_its_predictions():
    from seqgen.transfer import transplant

    tok = MidiTokenizer(version=3)
    torch.manual_seed(0)
    parent = build_model(make_config("lstm", tok.vocab_size, "tiny", mid_id=tok.mid_id,
                                     head_ids=list(range(0, tok.vocab_size, 7)))).eval()
    child = transplant(parent, tok, np.arange(tok.vocab_size)).eval()
    assert child.config.head_ids is None and child.head.weight.shape[0] == tok.vocab_size
    x = torch.randint(0, tok.vocab_size, (2, 9))
    with torch.no_grad():
        assert torch.allclose(parent(x)[0], child(x)[0], atol=1e-5)
