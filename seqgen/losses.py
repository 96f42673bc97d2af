"""Validation losses of a model on a token stream, in nats per token.

- ``stream_loss``: the model's best honest loss on a token stream: the text is read in order,
  chunk after chunk, with the state carried (hidden state for recurrent models, a sliding KV
  cache for the transformer), so every token is predicted from earlier validation text only.
- ``windowed_loss``: nanoGPT's method: consecutive windows (64 tokens) each read from empty
  context.
- ``infill_loss``: loss on the middle span of fill-in-the-middle examples (PSM order) cut
  from the stream, excluding the sentinels.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from seqgen.errors import CorpusError
from seqgen.models import SeqModel
from seqgen.objectives import SENTINELS, FimIds, psm, split_points

Done = Optional[Callable[[int, int], None]]  # told (batches done, batches in all) as a reading goes on


def stream_loss(model: SeqModel, tokens: np.ndarray, chunk: int = 256, device="cpu",
                max_tokens: int | None = None, streams: int = 1) -> float:
    """Mean next-token loss over ``tokens`` read in order with the state carried.

    ``streams > 1`` cuts the text into that many consecutive pieces read side by side as one
    batch (each from empty context): a quicker estimate for evaluation during training, and,
    with pieces of a fixed length, the loss with the state reset that often.
    """
    return float(token_losses(model, tokens, chunk, device, max_tokens, streams).mean())


def segment_losses(losses: np.ndarray, segment: int = 2000) -> list[float]:
    """Mean loss per consecutive ``segment`` tokens of a carried reading (a drifting state shows
    as losses that rise along the text)."""
    n = len(losses) // segment
    return [float(x) for x in losses[: n * segment].reshape(n, segment).mean(axis=1)] if n else []


@torch.no_grad()
def token_losses(model: SeqModel, tokens: np.ndarray, chunk: int = 256, device="cpu",
                 max_tokens: int | None = None, streams: int = 1, done: Done = None) -> np.ndarray:
    """The loss of every predicted token (streams one after the other), as ``stream_loss`` reads them."""
    was = model.training
    model.eval()
    n = len(tokens) if max_tokens is None else min(len(tokens), max_tokens + 1)
    if n < 2:
        raise CorpusError(f"the validation split has {len(tokens)} token(s); evaluating needs at least two "
                          "(use a larger --val-fraction or a longer corpus)")
    streams = max(1, min(streams, (n - 1) // chunk))  # each stream at least one chunk long
    piece = (n - 1) // streams
    rows = np.asarray(tokens[: streams * piece + 1], dtype=np.int64)
    starts = np.arange(streams) * piece
    state, parts = None, []
    total = -(-piece // chunk)
    for k, i in enumerate(range(0, piece, chunk)):
        j = min(i + chunk, piece)
        idx = starts[:, None] + np.arange(i, j + 1)[None, :]
        xy = torch.as_tensor(rows[idx], device=device)  # (S, j - i + 1)
        logits, state = model(xy[:, :-1], state)
        loss = F.cross_entropy(logits.float().transpose(1, 2), xy[:, 1:], reduction="none")  # (S, j - i)
        parts.append(loss.cpu().numpy())
        if done is not None:
            done(k + 1, total)
    model.train(was)
    return np.concatenate(parts, axis=1).reshape(-1)


@torch.no_grad()
def windowed_loss(model: SeqModel, tokens: np.ndarray, window: int = 64, batch: int = 128,
                  device="cpu", done: Done = None) -> float:
    """Mean loss over consecutive ``window``-token windows, each from empty context."""
    was = model.training
    model.eval()
    n = (len(tokens) - 1) // window
    if n < 1:
        raise CorpusError(f"the validation split has {len(tokens)} tokens; the windowed loss needs more than "
                          f"{window} (use a larger --val-fraction or a longer corpus)")
    starts = np.arange(n) * window
    total = 0.0
    for i in range(0, n, batch):
        s = starts[i : i + batch]
        idx = s[:, None] + np.arange(window + 1)[None, :]
        xy = torch.as_tensor(np.asarray(tokens[idx], dtype=np.int64), device=device)
        logits, _ = model(xy[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1), reduction="sum").item()
        if done is not None:
            done(min(i + batch, n), n)
    model.train(was)
    return total / (n * window)


@torch.no_grad()
def infill_loss(model: SeqModel, tokens: np.ndarray, fim: FimIds, window: int = 128,
                examples: int = 256, batch: int = 32, seed: int = 1234, device="cpu", done: Done = None) -> float:
    """Mean loss on the middle tokens of PSM examples cut at fixed places (a seeded draw)."""
    was = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    src_len = window + 1 - SENTINELS
    if len(tokens) <= src_len:
        raise CorpusError(f"the validation split has {len(tokens)} tokens; the infill loss needs more than "
                          f"{src_len} (use a larger --val-fraction or a longer corpus)")
    rows, masks = [], []
    for _ in range(examples):
        start = int(rng.integers(0, len(tokens) - src_len))
        src = np.asarray(tokens[start : start + src_len], dtype=np.int64)
        a, b = split_points(len(src), rng)
        seq = psm(src[:a], src[a:b], src[b:], fim)
        mask = np.zeros(len(seq) - 1, dtype=bool)
        mid_at = len(seq) - 2 - (b - a)  # index of <mid>; targets after it are the middle
        mask[mid_at : mid_at + (b - a)] = True
        rows.append(seq)
        masks.append(mask)
    x = np.stack(rows)
    m = np.stack(masks)
    total, count = 0.0, 0
    for i in range(0, examples, batch):
        xb = torch.as_tensor(x[i : i + batch], device=device)
        mb = torch.as_tensor(m[i : i + batch], device=device)
        logits, _ = model(xb[:, :-1])
        loss = F.cross_entropy(logits.transpose(1, 2), xb[:, 1:], reduction="none")
        total += loss[mb].sum().item()
        count += int(mb.sum())
        if done is not None:
            done(min(i + batch, examples), examples)
    model.train(was)
    return total / count


def bits(nats: float) -> float:
    return nats / math.log(2)
