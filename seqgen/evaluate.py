"""Validation losses, in nats per token.

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

import numpy as np
import torch
import torch.nn.functional as F

from seqgen.models import SeqModel
from seqgen.objectives import SENTINELS, FimIds, psm, split_points


@torch.no_grad()
def stream_loss(model: SeqModel, tokens: np.ndarray, chunk: int = 256, device="cpu",
                max_tokens: int | None = None, streams: int = 1) -> float:
    """Mean next-token loss over ``tokens`` read in order with the state carried.

    ``streams > 1`` cuts the text into that many consecutive pieces read side by side as one
    batch (each from empty context): a quicker estimate for evaluation during training.
    """
    was = model.training
    model.eval()
    n = len(tokens) if max_tokens is None else min(len(tokens), max_tokens + 1)
    if n < 2:
        raise ValueError("need at least two tokens to evaluate")
    streams = max(1, min(streams, (n - 1) // chunk))  # each stream at least one chunk long
    piece = (n - 1) // streams
    rows = np.asarray(tokens[: streams * piece + 1], dtype=np.int64)
    starts = np.arange(streams) * piece
    state, total, count = None, 0.0, 0
    for i in range(0, piece, chunk):
        j = min(i + chunk, piece)
        idx = starts[:, None] + np.arange(i, j + 1)[None, :]
        xy = torch.as_tensor(rows[idx], device=device)  # (S, j - i + 1)
        logits, state = model(xy[:, :-1], state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1), reduction="sum").item()
        count += streams * (j - i)
    model.train(was)
    return total / count


@torch.no_grad()
def windowed_loss(model: SeqModel, tokens: np.ndarray, window: int = 64, batch: int = 128,
                  device="cpu") -> float:
    """Mean loss over consecutive ``window``-token windows, each from empty context."""
    was = model.training
    model.eval()
    n = (len(tokens) - 1) // window
    if n < 1:
        raise ValueError(f"need more than {window} tokens to evaluate")
    starts = np.arange(n) * window
    total = 0.0
    for i in range(0, n, batch):
        s = starts[i : i + batch]
        idx = s[:, None] + np.arange(window + 1)[None, :]
        xy = torch.as_tensor(np.asarray(tokens[idx], dtype=np.int64), device=device)
        logits, _ = model(xy[:, :-1])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1), reduction="sum").item()
    model.train(was)
    return total / (n * window)


@torch.no_grad()
def infill_loss(model: SeqModel, tokens: np.ndarray, fim: FimIds, window: int = 128,
                examples: int = 256, batch: int = 32, seed: int = 1234, device="cpu") -> float:
    """Mean loss on the middle tokens of PSM examples cut at fixed places (a seeded draw)."""
    was = model.training
    model.eval()
    rng = np.random.default_rng(seed)
    src_len = window + 1 - SENTINELS
    if len(tokens) <= src_len:
        raise ValueError(f"need more than {src_len} tokens to evaluate infilling")
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
    model.train(was)
    return total / count


def bits(nats: float) -> float:
    return nats / math.log(2)


def evaluate_run(run, which: str = "best", corpus: str | None = None, device: str = "auto",
                 infill_examples: int = 512, compositions: int = 8) -> dict:
    """Every loss of a run on the whole validation split of its corpus, as a JSON-able dict."""
    from seqgen import checkpoint as ckpt_io
    from seqgen.data import load_corpus
    from seqgen.errors import CorpusError
    from seqgen.runs import checkpoint_path
    from seqgen.train import resolve_device

    path = checkpoint_path(run, which)
    dev = resolve_device(device)
    ckpt = ckpt_io.load(path, device=dev)
    spec = corpus or ckpt.extra.get("corpus")
    if not spec:
        raise CorpusError(f"{path} does not name its corpus; pass --corpus")
    data = load_corpus(spec, encoding=ckpt.extra.get("encoding", "utf-8"), tokenizer=ckpt.tokenizer)
    _, val = data.split(ckpt.train.val_fraction)
    model = ckpt.model
    window = ckpt.train.window
    loss = stream_loss(model, val, chunk=window, device=dev)
    result = {
        "val_loss": loss,
        "val_bits_per_token": bits(loss),
        "val_loss_windowed": windowed_loss(model, val, window=64, device=dev),
        "tokens": int(len(val)),
        "step": ckpt.step,
        "model": model.config.to_dict()["type"],
        "params": model.num_params(),
        "objective": ckpt.train.objective,
        "checkpoint": str(path),
    }
    if ckpt.train.objective != "causal" and len(val) > window:
        result["infill_loss"] = infill_loss(model, val, FimIds.of(ckpt.tokenizer), window=window,
                                            examples=infill_examples, device=dev)
    if hasattr(ckpt.tokenizer, "music_statistics"):
        result.update(ckpt.tokenizer.music_statistics(model, data, ckpt, device=dev, compositions=compositions))
    return result
