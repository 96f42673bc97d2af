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


def test_head_speed_prints_a_row_per_output_layer():
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "head_speed.py"), "--steps", "2", "--used", "40"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 5 and "vocabulary 815" in lines[0]
    assert lines[2].startswith("a row per token") and lines[3].startswith("40 rows + 1 shared")
    assert all(line.rstrip().endswith("x") for line in lines[2:])
