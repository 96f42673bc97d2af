"""Errors a user can cause. The CLI's one error boundary turns every SeqgenError into one red
line and exit code 1; anything else is a bug and says so."""


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


class MusicFileError(SeqgenError):
    """A music file that cannot be read or holds no notes (the reason is the message)."""


class FileWriteError(SeqgenError, OSError):
    """A file could not be written (no space, read-only folder, permission); the previous
    file at that path, if any, is intact and no temp file is left behind."""


class RunError(SeqgenError):
    """A run folder that does not exist, cannot be read, or holds nothing to show yet."""


class MissingExtraError(SeqgenError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class RunLockedError(SeqgenError):
    """Another training holds the run folder."""


class DistributedError(SeqgenError):
    """A process of a multi-process training ended, or the processes cannot agree."""


class SoundFontError(SeqgenError):
    """No SoundFont to render audio with, or one that cannot be read."""
