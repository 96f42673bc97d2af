"""How likely a text is under a model: the log-probability of each of its tokens, read in order
with the state carried (as ``seqgen.losses.stream_loss`` reads validation text), over either
engine (a bundle needs no torch)."""

from __future__ import annotations

import math

import numpy as np

from seqgen.errors import ConfigError
from seqgen.sampling import log_softmax

CHUNK = 64  # tokens per engine call: short enough for every model's window, long enough to be quick


def token_logprobs(engine, ids: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """The model's log-probability (natural log) of ``ids[1:]``, each given the ids before it:
    (len(ids) - 1,) float64. ``engine`` needs ``start(batch)`` and ``forward(ids, state)`` ->
    (all logits (B, T, V), state)."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) < 2:
        raise ConfigError(f"scoring needs a text of at least two tokens (the first is only read), got {len(ids)}")
    state = engine.start(1)
    parts = []
    for i in range(0, len(ids) - 1, chunk):
        x = ids[i : min(i + chunk, len(ids) - 1)]
        logits, state = engine.forward(x[None], state)  # (1, T, V)
        lp = log_softmax(np.asarray(logits)[0])  # (T, V)
        parts.append(lp[np.arange(len(x)), ids[i + 1 : i + 1 + len(x)]])
    return np.concatenate(parts)


def score_text(gen, text: str) -> dict:
    """Nats and bits per token of ``text`` under ``gen``'s model (a character model's token is a
    character). The first token is context only; every later one is predicted from all before it."""
    if gen.tokenizer.kind != "text":
        raise ConfigError(f"{gen.source} is a music model; score reads text")
    ids = gen.tokenizer.encode(text)
    lp = token_logprobs(gen.engine, ids)
    nats = float(-lp.sum())
    per = nats / len(lp)
    return {"chars": len(text), "tokens": int(len(ids)), "predicted": int(len(lp)), "nats": nats,
            "nats_per_char": per, "bits_per_char": per / math.log(2), "perplexity": math.exp(per),
            "model": gen.model_type, "source": str(gen.source)}
