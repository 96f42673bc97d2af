"""Sampling rules and the generation loop, in numpy: shared by the torch and onnxruntime engines.

``sample_next`` is pure: logits in, ids out. Temperature 0 means greedy (argmax, no division).
An engine is anything with ``advance(ids (B, T) int64, state) -> (last logits (B, V), state)``
and ``start()`` returning the initial state; the loop below never asks which engine it holds.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterator, Protocol

import numpy as np

from seqgen.config import DEFAULT_TEMPERATURE
from seqgen.errors import ConfigError, SeqgenError
from seqgen.objectives import FimIds, infill_prompt


class Engine(Protocol):
    def start(self, batch: int): ...

    def advance(self, ids: np.ndarray, state) -> tuple[np.ndarray, object]: ...


def check_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    # numbers.Real takes numpy scalars too; nan and inf are refused, not passed to int() or compared
    if not (isinstance(temperature, numbers.Real) and math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}")
    if top_k is not None and not (isinstance(top_k, numbers.Real) and math.isfinite(top_k)
                                  and int(top_k) == top_k and top_k >= 1):
        raise ConfigError(f"top-k must be an integer >= 1, got {top_k}")
    if top_p is not None and not (isinstance(top_p, numbers.Real) and 0.0 < top_p <= 1.0):
        raise ConfigError(f"top-p must be in (0, 1], got {top_p}")


def filtered_probs(logits: np.ndarray, temperature: float, top_k: int | None = None,
                   top_p: float | None = None) -> np.ndarray:
    """(B, V) probabilities after temperature, top-k and top-p (nucleus) filtering."""
    z = np.asarray(logits, dtype=np.float64)
    if top_k is not None and top_k < z.shape[-1]:
        k = int(top_k)  # 3.0 passes check_options; np.partition wants an int
        kth = np.partition(z, -k, axis=-1)[:, -k][:, None]
        z = np.where(z < kth, -np.inf, z)
    # the maximum goes before the division: a tiny temperature then sends the others to -inf,
    # where dividing first overflows every logit to inf (and the probabilities to nan)
    with np.errstate(over="ignore"):  # overflowing to -inf is the point
        z = (z - z.max(axis=-1, keepdims=True)) / temperature
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(p, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the tokens ranked above
        keep_sorted = before < top_p  # smallest set whose mass reaches top_p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        p = np.where(keep, p, 0.0)
        p /= p.sum(axis=-1, keepdims=True)
    return p


def sample_next(logits: np.ndarray, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """Pick the next id of each row of ``logits`` (B, V). Returns (B,) int64."""
    check_options(temperature, top_k, top_p)
    logits = np.asarray(logits)
    if logits.ndim != 2:
        raise ValueError(f"Expected logits to be 2D (batch, vocab), got {logits.ndim}D")
    if temperature == 0:
        return logits.argmax(axis=-1).astype(np.int64)
    p = filtered_probs(logits, temperature, top_k, top_p)
    rng = rng if rng is not None else np.random.default_rng()
    c = np.cumsum(p, axis=-1)
    u = rng.random((p.shape[0], 1))
    # the first id whose cumulative mass passes u times the cumulative total (p.sum() rounds
    # differently), and never past the last id with mass: a draw near 1 stays in the support
    last = p.shape[-1] - 1 - (p[:, ::-1] > 0).argmax(axis=-1)
    idx = np.minimum((c <= u * c[:, -1:]).sum(axis=-1), last)
    return idx.astype(np.int64)


def generate(engine: Engine, prompt: np.ndarray, steps: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             rng: np.random.Generator | None = None, stop_id: int | None = None,
             banned: list[int] | tuple[int, ...] = ()) -> Iterator[np.ndarray]:
    """Yield (B,) ids, one step at a time, after reading ``prompt`` (B, P) once.

    Each new token costs one ``advance`` of one token (state carried). Rows that produced
    ``stop_id`` keep yielding it; the loop ends early when every row has stopped.
    ``banned`` ids (e.g. the infill sentinels during plain sampling) are never drawn.
    """
    check_options(temperature, top_k, top_p)
    prompt = np.asarray(prompt, dtype=np.int64)
    if prompt.ndim != 2 or prompt.shape[1] == 0:
        raise ConfigError("the prompt must hold at least one token")
    rng = rng if rng is not None else np.random.default_rng()
    state = engine.start(prompt.shape[0])
    logits, state = engine.advance(prompt, state)
    done = np.zeros(prompt.shape[0], dtype=bool)
    for i in range(steps):
        if banned:
            logits = np.array(logits, dtype=np.float32, copy=True)
            logits[:, list(banned)] = -np.inf
        nxt = sample_next(logits, temperature, top_k, top_p, rng)
        if stop_id is not None:
            nxt = np.where(done, stop_id, nxt)
            done |= nxt == stop_id
        yield nxt
        if done.all() or i == steps - 1:
            return
        logits, state = engine.advance(nxt[:, None], state)


# ---- helpers over a Generator (seqgen.engines.base: an engine and its tokenizer) ------------------------------------
def _sentinels(tokenizer) -> tuple[int, ...]:
    return (tokenizer.pre_id, tokenizer.suf_id, tokenizer.mid_id, tokenizer.eot_id)


def complete(gen, prompt_ids: np.ndarray, length: int, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, rng: np.random.Generator | None = None, batch: int = 1) -> Iterator[np.ndarray]:
    """Continue ``prompt_ids`` (1-D) for ``length`` tokens in ``batch`` rows; yields (batch,) ids."""
    prompt = np.tile(np.asarray(prompt_ids, dtype=np.int64)[None], (batch, 1))
    return generate(gen.engine, prompt, length, temperature, top_k, top_p, rng,
                    banned=_sentinels(gen.tokenizer))


def require_infill(gen) -> None:
    """Refuse to fill in a middle with a run that never learned to."""
    if not gen.knows_infill:
        raise SeqgenError(
            f"{gen.source} was trained with --objective {gen.objective}, so it cannot fill in a middle; "
            "train with --objective mixed (the default) or infill"
        )


def infill(gen, prefix_ids: np.ndarray, suffix_ids: np.ndarray, max_length: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, rng: np.random.Generator | None = None,
           batch: int = 1) -> list[np.ndarray]:
    """Write the middle between a prefix and a suffix (PSM order); one id array per row."""
    require_infill(gen)
    tok = gen.tokenizer
    prompt = infill_prompt(prefix_ids, suffix_ids, FimIds.of(tok))
    rows: list[list[int]] = [[] for _ in range(batch)]
    stopped = np.zeros(batch, dtype=bool)
    banned = (tok.pre_id, tok.suf_id, tok.mid_id)
    for ids in generate(gen.engine, np.tile(prompt[None], (batch, 1)), max_length + 1, temperature, top_k, top_p,
                        rng, stop_id=tok.eot_id, banned=banned):
        for r in np.flatnonzero(~stopped):
            if ids[r] == tok.eot_id:
                stopped[r] = True
            else:
                rows[r].append(int(ids[r]))
    return [np.asarray(r[:max_length], dtype=np.int64) for r in rows]
