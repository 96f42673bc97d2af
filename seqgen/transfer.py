"""Starting a run from another run's weights (``seqgen train NEW_CORPUS --init RUN``).

The vocabulary is merged: the characters the parent knows keep their meaning and their rows
of the embedding and the output layer; characters only the new corpus has get new rows. A
new row of the embedding starts as the mean of the parent's rows (an input like an average
character) and a new row of the output layer as the mean of its rows with the parent's lowest
output bias (a character the model starts out predicting as rarely as its rarest one); the
transformer's output layer is its embedding (tied), so it gets the mean row alone. Every other
weight is the parent's. A music run starts from a music run of the same tokenizer (the
vocabulary is fixed by its config, nothing to merge); text from music or the reverse is refused.
The optimizer, the schedule and the step count start afresh: that is the trainer's part. A
parent whose output layer scored only its corpus's tokens apart (``VocabHead``) hands on the
equivalent layer with a row per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from seqgen.checkpoint import Checkpoint, open_checkpoint
from seqgen.config import TrainConfig
from seqgen.errors import ConfigError
from seqgen.models import SeqModel, build_model, config_from_dict
from seqgen.tokenizers import SPECIALS, CharTokenizer, Tokenizer

# the weights with one row per token (the transformer's head.weight is embed.weight, tied)
VOCAB_ROWS = ("embed.weight", "head.weight", "head.bias")
NEW_ROWS = ("embedding and output rows: the mean of the parent's rows; output bias: the parent's lowest")


def merge_vocab(parent: Tokenizer, corpus: Tokenizer) -> tuple[Tokenizer, np.ndarray]:
    """The tokenizer a run started from ``parent`` trains with on a corpus whose own tokenizer
    is ``corpus``, and ``old_to_new``: for each parent id, its id in the merged vocabulary.
    Refuses text from music and the reverse, and two different music tokenizers (one line)."""
    if parent.kind != corpus.kind:
        raise ConfigError(f"--init starts a {corpus.kind} run from a {parent.kind} run: the vocabularies have "
                          f"nothing in common; start a {corpus.kind} run from a {corpus.kind} run")
    if not isinstance(parent, CharTokenizer):
        if parent.to_dict() != corpus.to_dict():
            raise ConfigError("--init: the parent's music tokenizer differs from this corpus's (another "
                              "resolution, bins or version); train the new run with the parent's tokenizer settings")
        return parent, np.arange(parent.vocab_size, dtype=np.int64)
    if not isinstance(corpus, CharTokenizer):
        raise ConfigError(f"--init: cannot merge a {type(corpus).__name__} into a character vocabulary")
    merged = CharTokenizer.from_chars(parent.chars + corpus.chars, kind=parent.kind)
    index = {c: i for i, c in enumerate(merged.chars)}
    old_to_new = [index[c] for c in parent.chars] + [merged.special_id(s) for s in SPECIALS]
    return merged, np.asarray(old_to_new, dtype=np.int64)


def transplant(
    parent: SeqModel, tokenizer: Tokenizer, old_to_new: np.ndarray, dropout: float | None = None
) -> SeqModel:
    """A new model with the parent's config (``dropout`` replaced when given) for ``tokenizer``'s
    vocabulary: the parent's weights, its token rows moved to their ids in the new vocabulary
    (``old_to_new``), new tokens' rows as the module docstring says."""
    config = parent.config.to_dict()
    config.update(vocab_size=tokenizer.vocab_size, mid_id=tokenizer.mid_id if config.get("mid_id", -1) >= 0 else -1)
    if dropout is not None:
        config["dropout"] = dropout
    old = dict(parent.state_dict())
    if config.get("head_ids") is not None:  # a row per token again: the new corpus may use any of them
        config["head_ids"] = None
        old["head.weight"], old["head.bias"] = parent.head.full()
    model = build_model(config_from_dict(config))
    new = model.state_dict()
    idx = torch.as_tensor(old_to_new, dtype=torch.long)
    fresh = torch.ones(tokenizer.vocab_size, dtype=torch.bool)
    fresh[idx] = False
    weights = {}
    for name, target in new.items():
        source = old[name].detach().to(target.dtype)
        if name in VOCAB_ROWS:
            rows = torch.empty_like(target)
            rows[idx] = source
            if fresh.any():
                rows[fresh] = source.min() if name == "head.bias" else source.mean(dim=0)
            weights[name] = rows
        else:
            assert source.shape == target.shape, f"{name}: {tuple(source.shape)} != {tuple(target.shape)}"
            weights[name] = source
    model.load_state_dict(weights)
    return model


# the TrainConfig fields that describe the model's shape: a run started from a parent takes the parent's
SHAPE = ("model", "size", "layers", "dim", "heads", "emb_dim", "attn_score")


@dataclass
class Start:
    """What ``init_from`` hands the trainer: the merged tokenizer, the parent checkpoint, where
    each parent id went, and the note for the run's ``config.json`` (``init``)."""

    tokenizer: Tokenizer
    parent: Checkpoint
    old_to_new: np.ndarray
    note: dict = field(default_factory=dict)

    def train_config(self, asked: TrainConfig) -> TrainConfig:
        """``asked`` with the parent's model shape (and, for the transformer, its attention span as
        the window). A shape option given that differs from the parent's is refused in one line."""
        p, m = self.parent.train, self.parent.model.config.to_dict()
        shape = {k: getattr(p, k) for k in SHAPE}
        shape.update(
            layers=m["layers"], dim=m["dim"], heads=m.get("heads", p.heads), emb_dim=m.get("emb_dim", p.emb_dim)
        )
        clash = [f"--{k.replace('_', '-')} {getattr(asked, k)}" for k in ("size", "layers", "dim", "heads", "emb_dim")
                 if getattr(asked, k) is not None and getattr(asked, k) != shape[k]]
        if clash:
            raise ConfigError(f"--init trains the parent's model ({p.model}, {m['layers']} x {m['dim']}); drop "
                              f"{', '.join(clash)}")
        if p.model == "transformer" and "window" in m:
            shape["window"] = m["window"]
        return asked.replace(**shape)

    def model(self, dropout: float | None = None) -> SeqModel:
        """The model the new run trains: the parent's weights in the merged vocabulary."""
        return transplant(self.parent.model, self.tokenizer, self.old_to_new, dropout)


def init_from(run: Path | str, corpus: Tokenizer) -> Start:
    """Open the parent (a run folder: its best checkpoint; or a checkpoint file; a bundle is
    refused) and merge its vocabulary with ``corpus``, the new corpus's own tokenizer."""
    parent = open_checkpoint(run, "best", device="cpu")
    tokenizer, old_to_new = merge_vocab(parent.tokenizer, corpus)
    added = []
    if isinstance(tokenizer, CharTokenizer) and isinstance(parent.tokenizer, CharTokenizer):
        added = sorted(set(tokenizer.chars) - set(parent.tokenizer.chars))
    note = {"from": str(Path(parent.path).resolve()), "step": parent.step, "best_val_loss": parent.best_val_loss,
            "corpus": parent.corpus, "kept_tokens": int(len(old_to_new)), "new_tokens": added,
            "new_rows": NEW_ROWS if added else None}
    return Start(tokenizer=tokenizer, parent=parent, old_to_new=old_to_new, note=note)
