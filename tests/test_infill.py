"""Infilling on a tiny trained model: it must learn to write the missing middle."""

import pytest

from seqgen.config import TrainConfig
from seqgen.data.load import load_corpus
from seqgen.engines.base import Generator
from seqgen.engines.torch_engine import TorchEngine
from seqgen.sampling import infill
from seqgen.train import Trainer

ALPHABET = "abcdefghijklmnopqrstuvwxyz"


@pytest.mark.slow
@pytest.mark.parametrize("model_type", ["lstm", "lstm-attn", "transformer"])
def test_tiny_model_learns_to_fill_the_middle(tmp_path, model_type):
    path = tmp_path / "abc.txt"
    path.write_text((ALPHABET + "\n") * 400)
    data = load_corpus(str(path))
    cfg = TrainConfig(model=model_type, size="tiny", dim=128, objective="infill", steps=800, batch=16,
                      window=32, lr=1e-2, seed=0, heads=2)
    trainer = Trainer(cfg, data, tmp_path / "run")
    trainer.run()
    gen = Generator(TorchEngine(trainer.model), data.tokenizer, model_type, "infill", tmp_path)
    tok = data.tokenizer
    middle = infill(gen, tok.encode("ghij"), tok.encode("nopq"), max_length=20, temperature=0)[0]
    assert tok.decode(middle) == "klm"
