"""Built-in corpora: data assembled from what installed packages ship (music21's corpus).

Nothing is copied into seqgen; each corpus names the files it reads, and ``corpora/README.md``
says which collections it uses and on what terms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from seqgen.errors import CorpusError


def music21_corpus_dir() -> Path:
    """The folder of music21's bundled corpus (found without importing music21)."""
    import importlib.util

    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError("music21 is not installed; built-in corpora need it (pip install music21)")
    path = Path(list(spec.submodule_search_locations)[0]) / "corpus"
    if not path.is_dir():
        raise CorpusError(f"music21's corpus is missing at {path}; reinstall music21 with its corpus")
    return path


def _folk_abc_files() -> list[Path]:
    root = music21_corpus_dir()
    files = sorted(p for p in root.rglob("*.abc") if "josquin" not in p.parts)
    if not files:
        raise CorpusError(f"no ABC files found under {root}")
    return files


def _bach_chorale_files() -> list[Path]:
    # The music side lists pieces itself (it de-duplicates music21's chorale iterator).
    from seqgen.music.corpus import bach_chorale_paths

    return bach_chorale_paths()


@dataclass(frozen=True)
class BuiltinCorpus:
    name: str
    kind: str  # "text" or "music"
    description: str
    terms: str
    files: Callable[[], list[Path]]


BUILTIN: dict[str, BuiltinCorpus] = {
    c.name: c
    for c in (
        BuiltinCorpus(
            name="folk-abc",
            kind="text",
            description="About 13,000 folk tunes in ABC notation from music21's corpus "
            "(O'Neill's 1850, Ryan's Mammoth, Aird's Airs, Essen, Nottingham, misc. folk); "
            "a character model on it writes new tunes.",
            terms="Redistributed by music21 with the encoders' permission; the Essen "
            "collection is for non-commercial use only.",
            files=_folk_abc_files,
        ),
        BuiltinCorpus(
            name="bach-chorales",
            kind="music",
            description="About 350 unique four-part chorales by J. S. Bach from music21's "
            "corpus, tokenized as MIDI events.",
            terms="Public-domain music; encodings redistributed by music21.",
            files=_bach_chorale_files,
        ),
    )
}


def get_builtin(name: str) -> BuiltinCorpus | None:
    return BUILTIN.get(name)
