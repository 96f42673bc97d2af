"""`seqgen train NEW_CORPUS --init RUN` through the CLI: a new run from a parent's weights, with a
merged vocabulary; the refusals in one line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from seqgen import checkpoint as ckpt_io
from seqgen.cli import app

runner = CliRunner()
TINY = ["--window", "32", "--batch", "4", "--quiet"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    from conftest import TEXT

    root = tmp_path_factory.mktemp("init")
    # named corpus.txt like the other tests' copy of TEXT: the token cache keys by content and
    # keeps the name it first saw, so another name here would change what other tests' runs show
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")
    # new characters early on (in the training split), the text the parent knows after them
    (root / "small.txt").write_text("Zo\u00eb & \u00c6r\u00f8 sang 42 songs!\n" * 20 + TEXT[:4000], encoding="utf-8")
    r = run(
        "train",
        root / "corpus.txt",
        "--steps",
        150,
        "--size",
        "tiny",
        "--lr",
        "2e-2",
        "--warmup",
        10,
        "--out",
        root / "base",
        *TINY,
    )
    assert r.exit_code == 0, r.output
    return root


def test_init_starts_a_new_run_from_the_parent_with_a_merged_vocabulary(parent):
    root = parent
    r = run("train", root / "small.txt", "--init", root / "base", "--steps", 2, "--out", root / "child", *TINY)
    assert r.exit_code == 0, r.output
    r = run("train", root / "small.txt", "--steps", 2, "--size", "tiny", "--out", root / "scratch", *TINY)
    assert r.exit_code == 0, r.output
    base, child = ckpt_io.load(root / "base" / "best.pt"), ckpt_io.load(root / "child" / "last.pt")
    assert set(base.tokenizer.chars) < set(child.tokenizer.chars)
    new = set((root / "small.txt").read_text(encoding="utf-8")) - set(base.tokenizer.chars)
    assert new >= set("\u00eb\u00c6\u00f8") and set(child.tokenizer.chars) - set(base.tokenizer.chars) == new
    assert child.step == 2  # a fresh count, optimizer and schedule
    pm, cm = base.model.config.to_dict(), child.model.config.to_dict()
    assert {k: v for k, v in cm.items() if k not in ("vocab_size", "mid_id", "dropout")} == \
        {k: v for k, v in pm.items() if k not in ("vocab_size", "mid_id", "dropout")}
    # two steps from the parent's weights are far ahead of two steps from scratch
    scratch = ckpt_io.load(root / "scratch" / "last.pt")
    assert child.best_val_loss < scratch.best_val_loss - 0.3, (child.best_val_loss, scratch.best_val_loss)
    note = json.loads((root / "child" / "config.json").read_text())["init"]
    assert note["from"] == str((root / "base" / "best.pt").resolve()) and note["step"] == 150
    assert note["new_tokens"] == sorted(new) and "mean" in note["new_rows"]
    r = run("runs", root, "--json")
    rows = {d["name"]: d for d in json.loads(r.stdout)}
    assert rows["child"]["init_from"] == note["from"] and rows["base"]["init_from"] is None


@pytest.mark.parametrize("extra, fragment", [
    (["--resume"], "give one of them"),
    (["--dim", "48"], "drop --dim 48"),
], ids=["with-resume", "other-shape"])
def test_init_refusals_are_one_line(parent, extra, fragment):
    r = run("train", parent / "small.txt", "--init", parent / "base", "--steps", 2, "--out", parent / "refused",
            *TINY, *extra)
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert r.stderr.startswith("error:") and fragment in r.stderr


def test_a_text_run_from_a_music_run_is_refused(parent, tmp_path):
    import torch

    from seqgen.config import TrainConfig
    from seqgen.models import build_model, make_config
    from seqgen.tokenizers.midi import MidiTokenizer

    tok = MidiTokenizer()
    torch.manual_seed(0)
    model = build_model(make_config("lstm", tok.vocab_size, "tiny", mid_id=tok.mid_id))
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=tok, train=TrainConfig()), tmp_path / "music" / "best.pt")
    r = run("train", parent / "small.txt", "--init", tmp_path / "music", "--steps", 2, "--out", tmp_path / "t", *TINY)
    assert r.exit_code == 1 and r.stderr.startswith("error:") and "text run from a music run" in r.stderr, r.output
