"""The promise where users meet it: `seqgen sample`, `infill` and `compose` on an ONNX bundle run
in a process where `import torch` fails (as on a machine with onnxruntime and no torch)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(scope="module")
def music_bundle(tmp_path_factory) -> Path:
    import torch

    from seqgen import checkpoint as ckpt_io
    from seqgen.config import TrainConfig
    from seqgen.export import export_run
    from seqgen.models import build_model, make_config
    from seqgen.tokenizers.midi import MidiTokenizer

    root = tmp_path_factory.mktemp("music")
    tok = MidiTokenizer()
    torch.manual_seed(0)
    model = build_model(make_config("lstm", tok.vocab_size, "tiny", mid_id=tok.mid_id))
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=tok, train=TrainConfig(window=WINDOW)),
                 root / "run" / ckpt_io.BEST)
    export_run(root / "run", root / "bundle", loss_tokens=0)
    return root / "bundle"


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
