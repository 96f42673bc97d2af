"""Training step of the default LSTM with a row per token in its output layer, and with the rows
of only the tokens a corpus uses (``VocabHead``), side by side in one process.

    python bench/head_speed.py                       # the version-3 MIDI vocabulary, 171 tokens used
    python bench/head_speed.py --used 125 --vocab 629 --threads 2

One step: forward with the targets (the loss from the rows), backward, AdamW, at the default
batch (8) and window (128); also the same narrowed layer spread over the vocabulary before the
loss (what the step would cost if the loss were taken from the full logits). Median of the
timed steps after a warm-up; the rows alternate so a busy machine slows them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: MIDI tokens, version 3)")
    ap.add_argument("--used", type=int, default=171, help="tokens the corpus uses (bach-chorales, version 3: 171)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=40)
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from seqgen.models import build_model, make_config
    from seqgen.tokenizers.midi import MidiTokenizer

    torch.set_num_threads(a.threads)
    vocab = a.vocab or MidiTokenizer(version=3).vocab_size
    used = list(range(a.used))
    rng = torch.Generator().manual_seed(0)
    x = torch.randint(0, a.used, (8, 129), generator=rng)

    def setup(head_ids):
        torch.manual_seed(0)
        model = build_model(make_config("lstm", vocab, "small", mid_id=4, head_ids=head_ids)).train()
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    rows = {"a row per token": setup(None), f"{a.used} rows + 1 shared": setup(used),
            f"{a.used} rows, loss from the full logits": setup(used)}

    def step(name):
        model, opt = rows[name]
        start = time.perf_counter()
        if name.endswith("full logits"):
            logits, _ = model(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))
        else:
            loss, _ = model(x[:, :-1], targets=x[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(3):
        for name in rows:
            step(name)
    for _ in range(a.steps):
        for name in rows:
            times[name].append(step(name))
    base = statistics.median(times["a row per token"])
    print(f"LSTM 256, batch 8, window 128, vocabulary {vocab}, {a.threads} thread(s), median of {a.steps} steps")
    print(f"{'output layer':<42} {'ms/step':>8} {'tokens/s':>9} {'vs a row per token':>19}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<42} {m * 1000:8.1f} {8 * 128 / m:9,.0f} {base / m:18.2f}x")


if __name__ == "__main__":
    main()
