"""Music corpora -> one cached token stream.

A corpus is a MIDI/MusicXML/ABC/kern file, a folder of them, or the built-in ``bach-chorales``.
Files are read in a fixed order (sorted paths; the chorales in Riemenschneider order), each
piece is encoded ``BOS ... EOS`` and the pieces are concatenated, so the validation split (the
end of the stream) holds the last pieces. Files that cannot be read are skipped and reported
with the reason; a corpus with no readable file is a ``CorpusError``.

The cache key covers every file's bytes and the tokenizer config: a second run opens the
memmap at once. MIDI is read with symusic in this process (thousands of files a second);
music21 formats (about 50 ms a score) are parsed in a pool of worker processes when there
are many.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from seqgen.data import MUSIC_SUFFIXES, TokenData, cache_dir, open_cached, write_cache
from seqgen.errors import CorpusError
from seqgen.music.piece import MIDI_SUFFIXES, MusicFileError, read_any
from seqgen.tokenizers.midi import MidiTokenizer

CACHE_VERSION = 1
POOL_MIN_FILES = 16  # parse music21 files in worker processes from this many on

Progress = Callable[[int, int, str], None]  # (files done, files in all, current file)
Report = Callable[[list, int], None]  # (skipped [(file, reason)], files in all)


# ---- which files -----------------------------------------------------------------------------
def bach_chorale_paths() -> list[Path]:
    """The unique chorales of music21's corpus, in Riemenschneider order.

    ``music21.corpus.chorales.Iterator`` yields 371 names of which some repeat; the list
    (350 files) is kept in the cache folder per music21 version, so music21 is imported once.
    """
    import importlib.metadata

    from seqgen.corpora import music21_corpus_dir

    root = music21_corpus_dir()
    listing = cache_dir().parent / f"bach-chorales-music21-{importlib.metadata.version('music21')}.json"
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
    listing.parent.mkdir(parents=True, exist_ok=True)
    tmp = listing.with_name(f"{listing.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps([str(p.relative_to(root)) for p in paths]))
    os.replace(tmp, listing)
    return paths


def music_files(spec: str) -> tuple[list[Path], Path | None, str]:
    """(files in order, the folder their names are relative to, corpus name)."""
    from seqgen.corpora import get_builtin

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


def corpus_key(files: list[Path], root: Path | None, tokenizer: MidiTokenizer) -> str:
    h = hashlib.sha256(f"seqgen-music-v{CACHE_VERSION}|{json.dumps(tokenizer.to_dict(), sort_keys=True)}|".encode())
    for f in files:
        h.update(_rel(f, root).encode() + b"\0")
        try:
            h.update(hashlib.sha256(f.read_bytes()).digest())
        except OSError as e:
            h.update(f"unreadable {e.errno}".encode())
    return h.hexdigest()[:32]


# ---- reading and encoding ----------------------------------------------------------------------
@lru_cache(maxsize=4)
def _tokenizer(config: str) -> MidiTokenizer:
    return MidiTokenizer.from_dict(json.loads(config))


def encode_file(path: str, config: str) -> list[tuple[str, np.ndarray | None, str]]:
    """[(piece name, ids, "")] for a file, or [(file name, None, reason)] when it cannot be read.
    A top-level function so worker processes can run it."""
    tok = _tokenizer(config)
    try:
        pieces = read_any(Path(path))
        return [(p.name, tok.encode(p).astype(np.uint16), "") for p in pieces]
    except MusicFileError as e:
        return [(Path(path).name, None, str(e))]
    except Exception as e:  # a reader's bug on a strange file must not stop a whole corpus
        return [(Path(path).name, None, f"unreadable ({type(e).__name__}: {str(e)[:120]})")]


def _results(files: list[Path], config: str, workers: int | None) -> Iterator[tuple[Path, list]]:
    heavy = [f for f in files if f.suffix.lower() in MUSIC_SUFFIXES - MIDI_SUFFIXES]
    n_workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    import multiprocessing

    # fork (as torch's DataLoader does on Linux): workers need no re-import of the caller's main
    # module; where fork is unavailable the files are read here, one after another
    if len(heavy) >= POOL_MIN_FILES and n_workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
            futures = {f: pool.submit(encode_file, str(f), config) for f in heavy}
            for f in files:
                yield f, (futures[f].result() if f in futures else encode_file(str(f), config))
        return
    for f in files:
        yield f, encode_file(str(f), config)


def load_music_corpus(spec: str, tokenizer: MidiTokenizer | None = None, progress: Progress | str | None = "auto",
                      report: Report | str | None = "auto", workers: int | None = None) -> TokenData:
    """Token stream of a music corpus, from the cache when it holds it.

    ``progress``: a callback, None, or "auto" (a rich bar on stderr when stderr is a terminal).
    ``report``: what is told about skipped files: a callback, None, or "auto" (lines on stderr).
    """
    if tokenizer is None:
        tokenizer = MidiTokenizer()
    if not isinstance(tokenizer, MidiTokenizer):
        raise CorpusError(f"{spec!r} is a music corpus, but the run's tokenizer is {tokenizer.to_dict()['type']!r}; "
                          "music needs a run trained on music")
    files, root, name = music_files(spec)
    report_fn = _stderr_report if report == "auto" else report
    key = corpus_key(files, root, tokenizer)
    cached = open_cached(key)
    if cached is not None:
        if report_fn and cached.meta.get("skipped"):
            report_fn(cached.meta["skipped"], cached.meta.get("files", len(files)))
        return cached
    config = json.dumps(tokenizer.to_dict(), sort_keys=True)
    meta: dict = {"files": len(files), "pieces": [], "skipped": [], "kind": "music"}
    bar = _auto_progress(len(files)) if progress == "auto" else None
    tick = bar.update if bar is not None else progress if callable(progress) else None

    def chunks() -> Iterator[np.ndarray]:
        # meta is filled while write_cache consumes this; it writes meta after the last chunk
        offset = 0
        for i, (f, results) in enumerate(_results(files, config, workers)):
            if f.suffix.lower() not in MUSIC_SUFFIXES:
                meta["skipped"].append([_rel(f, root), f"not a music file ({f.suffix or 'no suffix'})"])
                results = []
            for piece_name, ids, reason in results:
                if ids is None:
                    meta["skipped"].append([_rel(f, root), reason])
                    continue
                meta["pieces"].append([piece_name, offset, int(len(ids))])
                offset += len(ids)
                yield ids
            if tick:
                tick(i + 1, len(files), str(f))
        if not meta["pieces"]:
            reasons = "; ".join(f"{n}: {r}" for n, r in meta["skipped"][:3])
            raise CorpusError(f"no readable music in {spec!r}: all {len(files)} file(s) were skipped ({reasons})")

    try:
        data = write_cache(key, chunks(), tokenizer, name, meta)
    finally:
        if bar is not None:
            bar.close()
    if report_fn and meta["skipped"]:
        report_fn(meta["skipped"], len(files))
    return data


def held_out_pieces(tokens: np.ndarray, start: int) -> list[np.ndarray]:
    """The complete pieces (BOS ... EOS) that begin at or after ``start`` in a token stream."""
    tokens = np.asarray(tokens)
    bos = np.flatnonzero(tokens == 0)
    eos = np.flatnonzero(tokens == 1)
    out = []
    for b in bos[bos >= start]:
        e = eos[np.searchsorted(eos, b)] if np.searchsorted(eos, b) < len(eos) else None
        if e is not None:
            out.append(np.asarray(tokens[b : e + 1], dtype=np.int64))
    return out


# ---- talking to the terminal (only when the caller leaves it to us) -----------------------------
def _rel(f: Path, root: Path | None) -> str:
    try:
        return str(f.relative_to(root)) if root is not None else f.name
    except ValueError:
        return f.name


def _stderr_report(skipped: list, total: int) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False)
    console.print(f"[yellow]skipped {len(skipped)} of {total} file(s):[/]")
    for name, reason in skipped[:10]:
        console.print(f"  {escape(name)}: {escape(reason)}", soft_wrap=True)
    if len(skipped) > 10:
        console.print(f"  ... and {len(skipped) - 10} more")


class _Bar:
    def __init__(self, total: int):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("reading music"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("read", total=total)
        self.progress.start()

    def update(self, done: int, total: int, current: str) -> None:
        self.progress.update(self.task, completed=done)

    def close(self) -> None:
        self.progress.stop()


def _auto_progress(total: int) -> _Bar | None:
    return _Bar(total) if total > 20 and sys.stderr.isatty() else None
