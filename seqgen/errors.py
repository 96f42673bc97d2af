"""Errors a user can cause. The CLI turns every SeqgenError into one red line and exit code 1."""


class SeqgenError(Exception):
    """Base class for errors caused by input: a bad path, corpus, option or file."""


class CorpusError(SeqgenError):
    """The corpus cannot be read or is unusable for training."""


class ConfigError(SeqgenError, ValueError):
    """A configuration value or combination is invalid."""


class CheckpointError(SeqgenError):
    """A checkpoint or bundle is missing, corrupt, or from an unknown format."""


class TokenizerError(SeqgenError, ValueError):
    """Text or music that the tokenizer cannot encode."""


class ExportError(SeqgenError):
    """The exported graph does not reproduce the model (or cannot be built)."""
