"""Music corpora -> one cached token stream.

A corpus is a MIDI/MusicXML/ABC/kern file, a folder of them, or the built-in ``bach-chorales``.
Files are read in a fixed order (sorted paths; the chorales in Riemenschneider order), each
piece is encoded ``BOS ... EOS`` and the pieces are concatenated, so the validation split (the
end of the stream) holds the last pieces. Files that cannot be read are skipped and reported
with the reason through ``report``; a corpus with no readable file is a ``CorpusError``.

The cache key covers every file's bytes and the tokenizer config: a second run opens the
memmap at once. MIDI is read with symusic in this process (thousands of files a second);
music21 formats (about 50 ms a score) are parsed in a pool of worker processes when there
are many.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from seqgen.data.cache import TokenData, open_cached, write_cache
from seqgen.data.sources import MIDI_SUFFIXES, MUSIC_SUFFIXES, music_files, relative_name
from seqgen.errors import CorpusError, MusicFileError
from seqgen.music.files import read_any
from seqgen.tokenizers import Tokenizer
from seqgen.tokenizers.midi import MidiTokenizer

CACHE_VERSION = 1
POOL_MIN_FILES = 16  # parse music21 files in worker processes from this many on

Progress = Callable[[str, int, int], None]  # (task, files done, files in all)
Report = Callable[[list, int], None]  # (skipped [(file, reason)], files in all)


def corpus_key(files: list[Path], root: Path | None, tokenizer: MidiTokenizer) -> str:
    h = hashlib.sha256(f"seqgen-music-v{CACHE_VERSION}|{json.dumps(tokenizer.to_dict(), sort_keys=True)}|".encode())
    for f in files:
        h.update(relative_name(f, root).encode() + b"\0")
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


def load_music_corpus(spec: str, tokenizer: Tokenizer | None = None, progress: Progress | None = None,
                      report: Report | None = None, workers: int | None = None) -> TokenData:
    """Token stream of a music corpus, from the cache when it holds it.

    ``progress(task, done, total)`` hears about each file read; ``report(skipped, total)`` about
    the files skipped (also when the stream comes from the cache).
    """
    if tokenizer is None:
        tokenizer = MidiTokenizer()
    if not isinstance(tokenizer, MidiTokenizer):
        raise CorpusError(f"{spec!r} is a music corpus, but the run's tokenizer is {tokenizer.to_dict()['type']!r}; "
                          "music needs a run trained on music")
    files, root, name = music_files(spec)
    key = corpus_key(files, root, tokenizer)
    cached = open_cached(key)
    if cached is not None:
        if report and cached.meta.get("skipped"):
            report(cached.meta["skipped"], cached.meta.get("files", len(files)))
        return cached
    config = json.dumps(tokenizer.to_dict(), sort_keys=True)
    meta: dict = {"files": len(files), "pieces": [], "skipped": [], "kind": "music"}

    def chunks() -> Iterator[np.ndarray]:
        # meta is filled while write_cache consumes this; it writes meta after the last chunk
        offset = 0
        for i, (f, results) in enumerate(_results(files, config, workers)):
            if f.suffix.lower() not in MUSIC_SUFFIXES:
                meta["skipped"].append([relative_name(f, root), f"not a music file ({f.suffix or 'no suffix'})"])
                results = []
            for piece_name, ids, reason in results:
                if ids is None:
                    meta["skipped"].append([relative_name(f, root), reason])
                    continue
                meta["pieces"].append([piece_name, offset, int(len(ids))])
                offset += len(ids)
                yield ids
            if progress:
                progress("reading music", i + 1, len(files))
        if not meta["pieces"]:
            reasons = "; ".join(f"{n}: {r}" for n, r in meta["skipped"][:3])
            raise CorpusError(f"no readable music in {spec!r}: all {len(files)} file(s) were skipped ({reasons})")

    data = write_cache(key, chunks(), tokenizer, name, meta)
    if report and meta["skipped"]:
        report(meta["skipped"], len(files))
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
