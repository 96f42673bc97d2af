"""Train seqgen for a wall-clock budget and print the validation losses.

    python bench/train_budget.py --time 3m                       # default model on tinyshakespeare
    python bench/train_budget.py --time 3m --models rnn,gru,lstm,lstm-attn,transformer
    python bench/train_budget.py --time 2m --corpus other.txt -- --lr 8e-3   # extra train options

Each model is trained by `seqgen train CORPUS --time T --val-fraction 0.1` (plus the extra
options) in a fresh process, one after the other, then evaluated by `seqgen eval --json` on the
whole validation split. Run it with nothing else busy: timings on two cores are fragile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpora" / "tinyshakespeare.txt"


def seqgen(*args: str) -> str:
    cmd = [sys.executable, "-m", "seqgen", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def run_one(corpus: str, model: str | None, time: str, extra: list[str], root: Path) -> dict:
    out = root / (model or "default")
    args = ["train", corpus, "--time", time, "--val-fraction", "0.1", "--out", str(out), "--quiet", *extra]
    if model:
        args += ["--model", model]
    seqgen(*args)
    result = json.loads(seqgen("eval", str(out), "--json", "--last"))
    last = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val_loss" in r][-1]
    result.update(tokens_per_s=last["tokens_per_s"], steps=last["step"], train_time=last["elapsed"])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time", default="3m", help="training budget per model (e.g. 90s, 3m)")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="text corpus (default: tinyshakespeare)")
    ap.add_argument("--models", default="", help="comma-separated models (default: seqgen's default model)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    ap.add_argument("extra", nargs="*", help="more `seqgen train` options, after --")
    a = ap.parse_args()
    if not Path(a.corpus).exists():
        raise SystemExit(f"corpus {a.corpus} not found")
    models = [m for m in a.models.split(",") if m] or [None]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for m in models:
            r = run_one(a.corpus, m, a.time, a.extra, Path(tmp))
            rows.append(r)
            if not a.json:
                infill = f"{r['infill_loss']:.4f}" if "infill_loss" in r else "-"
                print(
                    f"{r['model']:<12} {a.time:>5}  val_loss {r['val_loss']:.4f}  "
                    f"windowed {r['val_loss_windowed']:.4f}  "
                    f"infill {infill}  {r['tokens_per_s']:>8,.0f} tok/s  {r['params']:>9,} params  {r['steps']} steps",
                    flush=True,
                )
    if a.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
