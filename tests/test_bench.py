"""The budget benchmark runs end to end at a tiny budget (a smoke test: no timing asserts)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_train_budget_smoke(text_corpus):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train_budget.py"), "--time", "3s", "--corpus", str(text_corpus),
         "--models", "lstm,transformer", "--", "--size", "tiny", "--window", "32", "--threads", "1"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("lstm") and lines[1].startswith("transformer")
    for line in lines:
        assert "val_loss" in line and "windowed" in line and "tok/s" in line and "params" in line
