"""Model registry: every model behind one interface (see ``seqgen.models.base``)."""

from __future__ import annotations

from typing import Any

from seqgen.config import MODEL_TYPES, MODELS, SIZES
from seqgen.errors import CheckpointError, ConfigError
from seqgen.models.base import ModelConfig, SeqModel, State
from seqgen.models.lstm_attn import LSTMAttnConfig, LSTMAttnLM
from seqgen.models.rnn import RecurrentConfig, RecurrentLM
from seqgen.models.transformer import TransformerConfig, TransformerLM

__all__ = ["MODEL_TYPES", "SIZES", "ModelConfig", "SeqModel", "State", "build_model",
           "config_from_dict", "make_config"]


def presets(model_type: str) -> dict[str, dict]:
    """The size presets of a model type (the registry in ``seqgen.config``)."""
    if model_type in MODELS:
        return MODELS[model_type].presets
    raise ConfigError(f"unknown model {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")


def make_config(model_type: str, vocab_size: int, size: str = "small", **overrides: Any) -> ModelConfig:
    """A config from a size preset, with explicit values (not None) taking precedence."""
    table = presets(model_type)
    if size not in table:
        raise ConfigError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    values = {**table[size], **{k: v for k, v in overrides.items() if v is not None}}
    values["vocab_size"] = vocab_size
    if model_type in ("rnn", "gru", "lstm"):
        values.pop("heads", None)
        values.pop("window", None)
        return RecurrentConfig(cell=model_type, **_only(RecurrentConfig, values))
    if model_type == "lstm-attn":
        return LSTMAttnConfig(**_only(LSTMAttnConfig, values))
    return TransformerConfig(**_only(TransformerConfig, values))


def _only(cls, values: dict) -> dict:
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    kind = d.get("type")
    if kind in ("rnn", "gru", "lstm"):
        return RecurrentConfig.from_dict({**d, "cell": kind})
    if kind == "lstm-attn":
        return LSTMAttnConfig.from_dict(d)
    if kind == "transformer":
        return TransformerConfig.from_dict(d)
    raise CheckpointError(f"unknown model type {kind!r} in checkpoint")


def build_model(config: ModelConfig) -> SeqModel:
    if isinstance(config, RecurrentConfig):
        return RecurrentLM(config)
    if isinstance(config, LSTMAttnConfig):
        return LSTMAttnLM(config)
    if isinstance(config, TransformerConfig):
        return TransformerLM(config)
    raise ConfigError(f"no model for config {type(config).__name__}")
