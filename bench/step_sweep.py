"""Train one configuration for a fixed number of steps and print its whole-split losses.

    python bench/step_sweep.py NAME '{"batch": 8, "lr": 1e-2}' 3150
    python bench/step_sweep.py NAME '{"batch": 16, "lr": 2e-2}' 1960 --corpus other.txt

Choices of batch, size and learning rate were compared this way: each configuration gets the
number of steps that two cores reach in the budget at its own speed (tokens/s measured side by
side, two threads, nothing else running), then trains for exactly that many steps on one
thread, so two configurations can run at once without their timings mattering. The schedule
is the trainer's own (warmup, cosine to the floor at the last step). Prints one JSON line:
val (whole validation split, state carried), win (64-character windows from empty context).

--orthogonal-init and --linear-decay are the two variants measured beside the defaults
(orthogonal recurrent matrices per gate; the learning rate decayed linearly to zero).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = HERE.parent.parent / "shared" / "corpora" / "tinyshakespeare.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="run name (the run folder goes under --root)")
    ap.add_argument("overrides", help="TrainConfig fields as JSON, e.g. '{\"batch\": 8}'")
    ap.add_argument("steps", type=int, help="optimizer steps")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--root", default="runs/sweep")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--orthogonal-init", action="store_true")
    ap.add_argument("--linear-decay", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    import seqgen.train as train
    from seqgen.config import TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.evaluate import stream_loss, windowed_loss

    if a.linear_decay:
        def linear(cfg, step, progress):
            warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
            return cfg.lr * warm * max(0.0, 1.0 - progress) + 1e-6
        train.lr_at = linear
    data = load_corpus(a.corpus)
    cfg = TrainConfig(steps=a.steps, eval_every=1.0, **json.loads(a.overrides))
    trainer = train.Trainer(cfg, data, Path(a.root) / a.name)
    if a.orthogonal_init:
        with torch.no_grad():
            for n, p in trainer.model.named_parameters():
                if "weight_hh" in n:
                    for g in range(p.shape[0] // p.shape[1]):
                        torch.nn.init.orthogonal_(p[g * p.shape[1] : (g + 1) * p.shape[1]])
    t = time.perf_counter()
    result = trainer.run()
    _, val = data.split(cfg.val_fraction)
    print(json.dumps({
        "name": a.name, "overrides": json.loads(a.overrides), "steps": a.steps,
        "val": round(stream_loss(trainer.model, val, chunk=256), 4),
        "win": round(windowed_loss(trainer.model, val), 4),
        "secs": round(time.perf_counter() - t), "tokens_per_s": round(result.tokens_per_s),
        "corpus": Path(a.corpus).name,
    }), flush=True)


if __name__ == "__main__":
    main()
