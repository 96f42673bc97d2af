"""Model registry: every model behind one interface (see ``seqgen.models.base``). ``REGISTRY``
is the one place that maps a model type to its config class, its module and the training
settings its config takes; every other function here dispatches through it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from seqgen.config import MODEL_TYPES, MODELS, SIZES
from seqgen.errors import CheckpointError, ConfigError
from seqgen.models.base import ModelConfig, SeqModel, State
from seqgen.models.lstm_attn import LSTMAttnConfig, LSTMAttnLM
from seqgen.models.rnn import RecurrentConfig, RecurrentLM
from seqgen.models.transformer import TransformerConfig, TransformerLM

if TYPE_CHECKING:
    from seqgen.config import TrainConfig

__all__ = ["MODEL_TYPES", "REGISTRY", "SIZES", "ModelConfig", "SeqModel", "State", "build_model",
           "config_from_dict", "make_config", "model_for"]


@dataclass(frozen=True)
class Entry:
    config: type[ModelConfig]
    model: type[SeqModel]
    fixed: dict[str, Any]  # config values the type implies (the recurrent cell)
    options: Callable[["TrainConfig"], dict[str, Any]]  # training settings this type's config takes


REGISTRY: dict[str, Entry] = {
    **{cell: Entry(RecurrentConfig, RecurrentLM, {"cell": cell}, lambda c: {}) for cell in ("rnn", "gru", "lstm")},
    "lstm-attn": Entry(LSTMAttnConfig, LSTMAttnLM, {}, lambda c: dict(
        score=c.attn_score, encoder=c.objective != "causal", memory=max(c.window, 64))),
    "transformer": Entry(TransformerConfig, TransformerLM, {}, lambda c: dict(heads=c.heads, window=c.window)),
}
assert set(REGISTRY) == set(MODEL_TYPES)


def entry(model_type: str) -> Entry:
    if model_type not in REGISTRY:
        raise ConfigError(f"unknown model {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")
    return REGISTRY[model_type]


def _only(cls, values: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def make_config(model_type: str, vocab_size: int, size: str = "small", **overrides: Any) -> ModelConfig:
    """A config from a size preset, with explicit values (not None) taking precedence."""
    e, table = entry(model_type), MODELS[model_type].presets if model_type in MODELS else {}
    if size not in table:
        raise ConfigError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    values = {**table[size], **{k: v for k, v in overrides.items() if v is not None}, **e.fixed}
    return e.config(**_only(e.config, {**values, "vocab_size": vocab_size}))


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    kind = d.get("type")
    if kind not in REGISTRY:
        raise CheckpointError(f"unknown model type {kind!r} in checkpoint")
    e = REGISTRY[kind]
    return e.config.from_dict({**d, **e.fixed})


def build_model(config: ModelConfig) -> SeqModel:
    kind = config.to_dict()["type"]
    if kind not in REGISTRY or not isinstance(config, REGISTRY[kind].config):
        raise ConfigError(f"no model for config {type(config).__name__}")
    return REGISTRY[kind].model(config)


# An output layer scores its vocabulary's used tokens apart (``VocabHead``) where at most this share is used.
COMPACT_HEAD = 0.75


def head_ids_for(model_type: str, vocab_size: int, used) -> list[int] | None:
    """The tokens a new model's output layer scores apart, given ``used`` (the ids its training
    batches can hold, or None): None (a row per token) where the model's head is tied to its
    embedding (the transformer) or where the used tokens are most of the vocabulary (text)."""
    if used is None or "head_ids" not in {f.name for f in dataclasses.fields(entry(model_type).config)}:
        return None
    ids = sorted({int(i) for i in used})  # the config checks them against the vocabulary
    return ids if len(ids) + 1 <= COMPACT_HEAD * vocab_size else None


def model_for(cfg: "TrainConfig", vocab_size: int, mid_id: int, used=None) -> SeqModel:
    """A new model of the shape a resolved training config asks for; ``used``: the ids its
    training batches can hold (``Tokenizer.output_ids``), which may narrow its output layer."""
    e = entry(cfg.model)
    shape = dict(layers=cfg.layers, dim=cfg.dim, emb_dim=cfg.emb_dim, dropout=cfg.dropout, mid_id=mid_id,
                 head_ids=head_ids_for(cfg.model, vocab_size, used))
    return build_model(make_config(cfg.model, vocab_size, cfg.size, **shape, **e.options(cfg)))
