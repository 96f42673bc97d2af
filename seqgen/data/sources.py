"""What a CORPUS argument names: a text file, a folder of text or music files, a music file,
or a built-in corpus assembled from what installed packages ship (music21's corpus).

Nothing is copied into seqgen; each built-in corpus names the files it reads, and
``corpora/README.md`` says which collections it uses and on what terms.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from seqgen.data.cache import cache_root
from seqgen.errors import CorpusError
from seqgen.fileio import write_json

MIDI_SUFFIXES = {".mid", ".midi"}
MUSIC_SUFFIXES = {".mid", ".midi", ".xml", ".mxl", ".musicxml", ".abc", ".krn"}


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
            files=lambda: bach_chorale_paths(),
        ),
    )
}


def get_builtin(name: str) -> BuiltinCorpus | None:
    return BUILTIN.get(name)


def bach_chorale_paths() -> list[Path]:
    """The unique chorales of music21's corpus, in Riemenschneider order.

    ``music21.corpus.chorales.Iterator`` yields 371 names of which some repeat; the list
    (350 files) is kept in the cache folder per music21 version, so music21 is imported once.
    """
    import importlib.metadata

    root = music21_corpus_dir()
    listing = cache_root() / f"bach-chorales-music21-{importlib.metadata.version('music21')}.json"
    try:
        rel = json.loads(listing.read_text())
        paths = [root / r for r in rel]
        if paths and all(p.exists() for p in paths):
            return paths
    except (OSError, ValueError):
        pass
    from music21 import corpus
    from music21.corpus import chorales

    paths = []
    for name in dict.fromkeys(chorales.Iterator(returnType="filename")):
        found = [root / f"{name}{s}" for s in (".mxl", ".xml", ".musicxml", ".krn") if (root / f"{name}{s}").exists()]
        if not found:
            try:
                found = [Path(str(corpus.getWork(name)))]
            except Exception:  # music21 raises its own CorpusException for unknown works
                continue
        if found[0] not in paths:
            paths.append(found[0])
    if not paths:
        raise CorpusError(f"no Bach chorales found in music21's corpus at {root}")
    write_json(listing, [str(p.relative_to(root)) for p in paths])
    return paths


def corpus_kind(spec: str) -> str:
    """'text' or 'music' for a corpus argument (a path or a built-in name)."""
    path = Path(spec).expanduser()
    if not path.exists():
        builtin = get_builtin(spec)
        if builtin is None:
            raise CorpusError(
                f"corpus {spec!r} is neither a file, a folder nor a built-in corpus "
                f"(built-in: {', '.join(BUILTIN)})"
            )
        return builtin.kind
    if path.is_file():
        return "music" if path.suffix.lower() in MUSIC_SUFFIXES - {".abc"} else "text"
    files = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
    music = [p for p in files if p.suffix.lower() in MUSIC_SUFFIXES]
    return "music" if music and len(music) >= len(files) / 2 else "text"


def text_files(spec: str) -> tuple[list[Path], str]:
    """The files of a text corpus, and a short name for it."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path], path.stem
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise CorpusError(f"folder {path} has no files")
        return files, path.resolve().name
    builtin = get_builtin(spec)
    if builtin is None or builtin.kind != "text":
        raise CorpusError(f"{spec!r} is not a text corpus")
    return builtin.files(), builtin.name


def music_files(spec: str) -> tuple[list[Path], Path | None, str]:
    """(files in order, the folder their names are relative to, corpus name)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path], path.parent, path.stem
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise CorpusError(f"folder {path} has no files")
        return files, path, path.resolve().name
    builtin = get_builtin(spec)
    if builtin is None or builtin.kind != "music":
        raise CorpusError(f"{spec!r} is not a music corpus (a MIDI/MusicXML/ABC file, a folder of them, "
                          f"or bach-chorales)")
    files = builtin.files()
    return files, Path(os.path.commonpath([str(f.parent) for f in files])), builtin.name


def relative_name(f: Path, root: Path | None) -> str:
    try:
        return str(f.relative_to(root)) if root is not None else f.name
    except ValueError:
        return f.name
