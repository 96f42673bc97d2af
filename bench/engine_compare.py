"""Batch-1 generation speed of the default bundles, this tree beside another seqgen tree (by
default the engine of commit 2a24e6f), measured in one run.

    git worktree add /tmp/old 2a24e6f
    python bench/engine_compare.py --old /tmp/old [--rounds 5] [--tokens 2000]

Builds the default LSTM and transformer (``small``, a 69-character vocabulary, random weights:
speed does not depend on what the weights learned), exports each with both trees (each tree's
own exporter and its own self-check against torch), then times ``seqgen bench``'s loop (one full
window of prompt, temperature 1, the clock started after the first token) in a fresh process
per (tree, model), alternating the trees round after round so that a busy machine slows both
alike. Each process times ``--repeats`` runs and keeps its fastest (a busy core only ever slows
a run down); the table shows the median of those over the rounds, and the ratio. One thread each.

Each process runs in its tree's folder, and says which seqgen it imported: ``python -c`` puts
the current folder ahead of PYTHONPATH, so run from this tree both sides would import this tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]

MAKE = """
import sys, torch
from pathlib import Path
from seqgen import checkpoint as ckpt_io
from seqgen.config import TrainConfig
from seqgen.export import export_run
from seqgen.models import build_model, make_config
from seqgen.tokenizers import CharTokenizer
root = Path(sys.argv[1])
tok = CharTokenizer.from_chars("".join(chr(c) for c in range(32, 96)) + "\\n")
for t in ("lstm", "transformer"):
    torch.manual_seed(0)
    model = build_model(make_config(t, tok.vocab_size, "small", mid_id=tok.mid_id))
    run = root / f"run-{t}"
    ckpt_io.save(ckpt_io.Checkpoint(model=model, tokenizer=tok, train=TrainConfig(model=t, window=256)),
                 run / ckpt_io.BEST)
    r = export_run(run, root / f"bundle-{t}", loss_tokens=0, force=True)
    print(t, r.exporter, r.max_abs_diff, file=sys.stderr)
"""

TIME = """
import json, sys, time, numpy as np
import seqgen
from seqgen.engines.onnx_engine import open_bundle
from seqgen.sampling import generate
g = open_bundle(sys.argv[1], threads=1)
window = int(g.info["bundle"]["model_config"].get("window") or g.info["bundle"].get("train_window") or 256)
prompt = np.random.default_rng(0).integers(0, g.tokenizer.vocab_size - 4, (1, window), dtype=np.int64)
n = int(sys.argv[2])
def timed(n):
    steps = generate(g.engine, prompt, n + 1, temperature=1.0, rng=np.random.default_rng(0))
    next(steps)
    wall, cpu = time.perf_counter(), time.process_time()
    assert sum(1 for _ in steps) == n
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)
timed(200)  # warm-up
runs = [timed(n) for _ in range(int(sys.argv[3]))]
print(json.dumps({"module": seqgen.__file__, "wall": max(r[0] for r in runs), "cpu": max(r[1] for r in runs)}))
"""


def run(tree: Path, code: str, *args) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                         timeout=1800, cwd=tree)
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr[-2000:]}")
    return out.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, default=Path("/tmp/old"), help="the other seqgen tree")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per process; the fastest counts")
    a = ap.parse_args()
    trees = {"old": a.old.resolve(), "new": HERE}
    with tempfile.TemporaryDirectory(prefix="seqgen-compare-") as tmp:
        for name, tree in trees.items():
            run(tree, MAKE, Path(tmp) / name)
        speeds: dict[tuple[str, str, int], list[float]] = {}
        for _ in range(a.rounds):
            for model in ("lstm", "transformer"):
                for name, tree in trees.items():
                    v = json.loads(run(tree, TIME, Path(tmp) / name / f"bundle-{model}", a.tokens, a.repeats))
                    if not Path(v["module"]).resolve().is_relative_to(tree):
                        raise SystemExit(f"the {name} run imported {v['module']}, not the seqgen of {tree}")
                    for clock, key in ((0, "wall"), (1, "cpu")):
                        speeds.setdefault((model, name, clock), []).append(v[key])
    print(f"median over {a.rounds} rounds of each process's fastest of {a.repeats} runs; batch 1, 1 thread; "
          "wall clock and tokens per CPU-second")
    print(f"{'model':12} {'clock':5} {'old tok/s':>10} {'new tok/s':>10} {'ratio':>6}  per-round ratios")
    for model in ("lstm", "transformer"):
        for clock, label in ((0, "wall"), (1, "cpu")):
            old, new = speeds[(model, "old", clock)], speeds[(model, "new", clock)]
            ratios = [n / o for n, o in zip(new, old)]
            print(f"{model:12} {label:5} {statistics.median(old):10,.0f} {statistics.median(new):10,.0f} "
                  f"{statistics.median(new) / statistics.median(old):6.2f}  {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    main()
