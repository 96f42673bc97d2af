"""Tokens/s of one LSTM training step (forward, backward, clipping, fused AdamW) by shape.

    python bench/lstm_step_speed.py                      # the shapes compared for the defaults
    python bench/lstm_step_speed.py --shapes 256x64x8,256x64x16 --threads 2

A shape is HIDDEN x EMBEDDING x BATCH, windows of 128 characters, the model seqgen's LSTM is
(embedding, one nn.LSTM layer, linear head). Run it with nothing else busy.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

DEFAULT = "256x64x8,256x64x16,192x64x8,320x64x8,384x64x8,384x64x16,512x64x8,256x32x8"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--window", type=int, default=128)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from seqgen.models import build_model, make_config

    vocab, T = 69, a.window
    for shape in a.shapes.split(","):
        H, E, B = (int(v) for v in shape.split("x"))
        model = build_model(make_config("lstm", vocab, "small", dim=H, emb_dim=E, mid_id=vocab - 2))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)

        def step(model=model, opt=opt, B=B) -> None:  # this shape's model, bound now
            x = torch.randint(0, vocab, (B, T + 1))
            logits, _ = model(x[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, vocab), x[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        step()
        n = max(5, 320 // B)
        t = time.perf_counter()
        for _ in range(n):
            step()
        dt = (time.perf_counter() - t) / n
        print(f"hidden {H:4d}  embedding {E:3d}  batch {B:3d}  {B * T / dt:9,.0f} tokens/s  {dt * 1e3:6.1f} ms/step",
              flush=True)


if __name__ == "__main__":
    main()
