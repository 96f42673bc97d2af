"""--init's library part: the merged vocabulary and the weights moved into it, for every model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqgen import checkpoint as ckpt_io
from seqgen.config import TrainConfig
from seqgen.errors import CheckpointError, ConfigError
from seqgen.models import build_model, make_config
from seqgen.tokenizers import CharTokenizer
from seqgen.train_state import TrainState
from seqgen.transfer import init_from, merge_vocab

MODELS = ["rnn", "gru", "lstm", "lstm-attn", "transformer"]
PARENT_CHARS = "\n abcehlo"
CORPUS_CHARS = "\n abdz!"  # keeps some, drops c, e, h, l, o; adds d, z, !


def parent_run(root, model_type, tok=None):
    tok = tok or CharTokenizer.from_chars(PARENT_CHARS)
    torch.manual_seed(0)
    extra = {"window": 16} if model_type == "transformer" else {}
    model = build_model(make_config(model_type, tok.vocab_size, "tiny", mid_id=tok.mid_id, **extra))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    path = root / f"parent-{model_type}"
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=tok, train=TrainConfig(model=model_type, size="tiny"),
                                    state=TrainState(step=7, best=1.5), corpus="parent.txt"), path / ckpt_io.BEST)
    return path, model, tok


def test_the_merged_vocabulary_keeps_every_parent_character_and_adds_the_new():
    parent = CharTokenizer.from_chars(PARENT_CHARS)
    merged, old_to_new = merge_vocab(parent, CharTokenizer.from_chars(CORPUS_CHARS))
    assert set(merged.chars) == set(PARENT_CHARS) | set(CORPUS_CHARS)
    for i, c in enumerate(parent.chars):
        assert merged.chars[old_to_new[i]] == c
    assert list(old_to_new[len(parent.chars):]) == [merged.pre_id, merged.suf_id, merged.mid_id, merged.eot_id]


@pytest.mark.parametrize("model_type", MODELS)
def test_known_characters_keep_the_parents_rows_and_logits(tmp_path, model_type):
    path, parent, ptok = parent_run(tmp_path, model_type)
    start = init_from(path, CharTokenizer.from_chars(CORPUS_CHARS))
    tok, model = start.tokenizer, start.model()
    _, old_to_new = merge_vocab(ptok, CharTokenizer.from_chars(CORPUS_CHARS))
    idx = torch.as_tensor(old_to_new)
    old, new = parent.state_dict(), model.state_dict()
    for name in new:
        if name in ("embed.weight", "head.weight", "head.bias"):
            torch.testing.assert_close(new[name][idx], old[name], rtol=0, atol=0)
        else:
            torch.testing.assert_close(new[name], old[name], rtol=0, atol=0)
    fresh = [tok.chars.index(c) for c in "dz!"]
    torch.testing.assert_close(new["embed.weight"][fresh], old["embed.weight"].mean(0).expand(3, -1))
    if "head.bias" in new:
        assert torch.all(new["head.bias"][fresh] == old["head.bias"].min())
    assert model.config.vocab_size == tok.vocab_size and model.config.mid_id == tok.mid_id
    # the same text (a middle sentinel included: lstm-attn switches on it) gives the parent's
    # logits at the parent's tokens
    text = ptok.encode("hello abc")
    ids = np.concatenate([text[:4], [ptok.mid_id], text[4:]])
    with torch.no_grad():
        want, _ = parent.eval()(torch.as_tensor(ids)[None])
        got, _ = model.eval()(torch.as_tensor(old_to_new[ids])[None])
    torch.testing.assert_close(got[..., idx], want, rtol=1e-5, atol=1e-5)
    assert start.note["from"].endswith("best.pt") and start.note["step"] == 7
    assert start.note["new_tokens"] == sorted("dz!") and start.note["kept_tokens"] == ptok.vocab_size


def test_text_from_music_and_a_bundle_are_refused_in_one_line(tmp_path):
    from seqgen.tokenizers.midi import MidiTokenizer

    path, _, _ = parent_run(tmp_path, "lstm", MidiTokenizer())
    with pytest.raises(ConfigError, match="text run from a music run"):
        init_from(path, CharTokenizer.from_chars(CORPUS_CHARS))
    start = init_from(path, MidiTokenizer())  # music from music: the same vocabulary
    assert start.tokenizer == MidiTokenizer() and start.note["new_tokens"] == []
    with pytest.raises(ConfigError, match="tokenizer differs"):
        init_from(path, MidiTokenizer(resolution=24))
    text, _, _ = parent_run(tmp_path / "t", "lstm")
    with pytest.raises(ConfigError, match="music run from a text run"):
        init_from(text, MidiTokenizer())
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "seqgen.json").write_text("{}")
    (bundle / "model.onnx").write_bytes(b"")
    with pytest.raises(CheckpointError, match="ONNX bundle"):
        init_from(bundle, CharTokenizer.from_chars(CORPUS_CHARS))
