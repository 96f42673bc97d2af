"""Training and validation splits of a token stream.

- ``tail``: the last ``val_fraction`` of the stream (nanoGPT's shakespeare_char split), for one
  text file, so figures compare with published ones.
- ``documents``: whole documents (the files of a folder, the tunes of an ABC text, the pieces of a
  music corpus) drawn with a fixed seed from across the corpus until they hold ``val_fraction`` of
  the tokens; no document is on both sides, and held-out text comes from every part of the
  corpus rather than from its last collection.
- ``auto``: documents when the corpus is made of at least ``MIN_DOCUMENTS`` (20) of them, else tail.

A music corpus read with tracks (MIDI tokens from version 2 on) trains on its pieces in training
layouts (the tracks shuffled or given first, controls dropped at random); split by documents,
its held-out pieces are measured as they are read (``TokenData.held_form``), the order a
composition is written in. (A tail split, for fewer than 20 pieces, cuts the training stream.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqgen.data.cache import TokenData
from seqgen.errors import ConfigError, CorpusError

SPLIT_SEED = 20240611  # fixed: every run on a corpus holds out the same documents, whatever its --seed
MIN_DOCUMENTS = 20  # fewer documents cannot stand for the corpus: a few held-out pieces would measure
# how unlike the others they are (7 MIDI files: 3.69 nats held out whole against 0.61 for the tail)


@dataclass
class Split:
    train: np.ndarray
    val: np.ndarray
    mode: str  # "tail" or "documents"
    held_out: list[str]  # names of the held-out documents (empty for tail)


def documents(data: TokenData) -> list[tuple[str, int, int]]:
    """(name, offset, length) of each document of the stream, in order (empty when unknown)."""
    rows = data.meta.get("pieces") or data.meta.get("documents") or []
    return [(str(name), int(offset), int(length)) for name, offset, length in rows]


def split(data: TokenData, val_fraction: float, mode: str = "auto", seed: int = SPLIT_SEED) -> Split:
    docs = documents(data)
    if mode == "auto":
        mode = "documents" if len(docs) >= MIN_DOCUMENTS else "tail"
    if mode == "tail":
        n = len(data)
        n_val = int(round(n * val_fraction))
        return Split(data.tokens[: n - n_val], data.tokens[n - n_val :], "tail", [])
    if mode != "documents":
        raise ConfigError(f"split must be auto, tail or documents, got {mode!r}")
    if len(docs) < 2:
        raise CorpusError(f"--split documents needs a corpus of at least two documents; {data.source!r} has "
                          f"{len(docs)} (use --split tail)")
    order = np.random.default_rng(seed).permutation(len(docs))
    target = val_fraction * sum(length for _, _, length in docs)
    held: set[int] = set()
    total = 0
    for i in order[:-1]:  # at least one document stays for training
        if total >= target:
            break
        held.add(int(i))
        total += docs[i][2]
    def gather(indices: list[int], tokens: np.ndarray, spans) -> np.ndarray:
        parts = [np.asarray(tokens[spans[i][0] : spans[i][0] + spans[i][1]]) for i in indices]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=tokens.dtype)

    trained = [(offset, length) for _, offset, length in docs]
    keep = [i for i in range(len(docs)) if i not in held]
    # held-out pieces are measured as they are read, where training reads them in a training layout
    if data.held_form is not None:
        val = gather(sorted(held), data.held_form, data.meta["held_form"])
    else:
        val = gather(sorted(held), data.tokens, trained)
    return Split(gather(keep, data.tokens, trained), val, "documents", [docs[i][0] for i in sorted(held)])


def run_split(data: TokenData, cfg) -> Split:
    """The training and validation split of a run (``cfg``: its TrainConfig): what the trainer
    trains and evaluates on, and what ``seqgen eval`` and the export's loss check read."""
    return split(data, cfg.val_fraction, cfg.split)
