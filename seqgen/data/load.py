"""``load_corpus``: any CORPUS argument -> a cached token stream."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from seqgen.data.cache import TokenData
from seqgen.data.music import Report, load_music_corpus
from seqgen.data.sources import corpus_kind, text_files
from seqgen.data.text import load_text
from seqgen.tokenizers import Tokenizer

Progress = Callable[[str, int, int], None]  # (task, done, total)


def load_corpus(spec: str, encoding: str = "utf-8", tokenizer: Tokenizer | None = None,
                progress: Progress | None = None, report: Report | None = None,
                workers: int | None = None) -> TokenData:
    """Read any corpus argument into a cached token stream.

    ``tokenizer`` (from a checkpoint, when resuming or evaluating) fixes the vocabulary instead
    of building it from the corpus. ``progress(task, done, total)`` hears about long reads;
    ``report(skipped, total)`` about music files that could not be read.
    """
    if corpus_kind(spec) == "music":
        data = load_music_corpus(spec, tokenizer=tokenizer, progress=progress, report=report, workers=workers)
    else:
        files, name = text_files(spec)
        data = load_text(files, name=name, encoding=encoding, tokenizer=tokenizer, progress=progress)
    path = Path(spec).expanduser()
    data.meta = {**data.meta, "spec": str(path.resolve()) if path.exists() else spec}
    return data
