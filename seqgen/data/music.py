"""Music corpora -> one cached token stream.

A corpus is a MIDI/MusicXML/ABC/kern file, a folder of them, or the built-in ``bach-chorales``.
Files are read in a fixed order (sorted paths; the chorales in Riemenschneider order), each
piece is encoded ``BOS ... EOS`` and the pieces are concatenated, so the validation split (the
end of the stream) holds the last pieces. Files that cannot be read are skipped and reported
with the reason through ``report``; a corpus with no readable file is a ``CorpusError``.

The cache key covers every file's bytes and the tokenizer config: a second run opens the
memmap at once. A large folder is read in a pool of worker processes: MIDI (symusic, about a
millisecond a file) in batches of files, music21 formats (about 50 ms a score) one file a
task. The results are taken in file order, so the token stream, the skip list and the cache
key are those of reading the files one after another in this process (``workers=1``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import lru_cache
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from seqgen.data.cache import TokenData, open_cached, write_cache
from seqgen.data.sources import MIDI_SUFFIXES, MUSIC_SUFFIXES, music_files, relative_name
from seqgen.errors import CorpusError, MusicFileError
from seqgen.music.files import read_any
from seqgen.tokenizers import Tokenizer
from seqgen.tokenizers.midi import MidiTokenizer

CACHE_VERSION = 2  # 2: the pieces as read, beside their training layouts (TokenData.held_form)
DEFAULT_VERSION = 3  # MIDI tokens of new runs: tracks and controls, voices interleaved (older runs read their own)
POOL_MIN_FILES = 16  # parse music21 files in worker processes from this many on
POOL_MIN_MIDI = 256  # read MIDI files in worker processes from this many on
MIDI_BATCH = 32  # MIDI files per worker task, so sending tasks and results costs little beside reading
AHEAD = 4  # tasks in flight per worker: results wait in memory at most this far ahead of the writer
HEAVY_SUFFIXES = MUSIC_SUFFIXES - MIDI_SUFFIXES  # parsed by music21

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


Encoded = tuple[str, np.ndarray | None, np.ndarray | None, str]


def encode_file(path: str, config: str) -> list[Encoded]:
    """[(piece name, training ids, ids as read, "")] for a file (the ids as read are None where
    the tokenizer gives training pieces no layout of their own: version 1), or [(file name, None,
    None, reason)] when it cannot be read. A top-level function so worker processes can run it."""
    tok = _tokenizer(config)
    try:
        pieces = read_any(Path(path))
        out: list[Encoded] = []
        for p in pieces:
            train, held = tok.training_encodings(p)
            out.append((p.name, train.astype(np.uint16), None if held is None else held.astype(np.uint16), ""))
        return out
    except MusicFileError as e:
        return [(Path(path).name, None, None, str(e))]
    except Exception as e:  # a reader's bug on a strange file must not stop a whole corpus
        return [(Path(path).name, None, None, f"unreadable ({type(e).__name__}: {str(e)[:120]})")]


def encode_files(paths: list[str], config: str) -> list[list[Encoded]]:
    """``encode_file`` for each path in order; a file that is not music gives [] (the caller
    skips it by its suffix). One worker task."""
    return [encode_file(p, config) if Path(p).suffix.lower() in MUSIC_SUFFIXES else [] for p in paths]


def default_workers() -> int:
    """The CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def _batches(files: list[Path], n_workers: int) -> list[list[Path]]:
    """The files in order, cut into worker tasks: each music21 file alone, the other files in
    runs of up to MIDI_BATCH (fewer when there are few, so that every worker has work)."""
    light = sum(f.suffix.lower() not in HEAVY_SUFFIXES for f in files)
    size = max(1, min(MIDI_BATCH, light // (n_workers * AHEAD)))
    batches: list[list[Path]] = []
    run: list[Path] = []
    for f in files:
        if f.suffix.lower() in HEAVY_SUFFIXES:
            if run:
                batches.append(run)
                run = []
            batches.append([f])
            continue
        run.append(f)
        if len(run) == size:
            batches.append(run)
            run = []
    if run:
        batches.append(run)
    return batches


def _pooled(files: list[Path], config: str, n_workers: int, root: Path | None) -> Iterator[tuple[Path, list]]:
    import multiprocessing

    batches = _batches(files, n_workers)
    todo = iter(batches)
    pending: deque = deque()

    def submit(pool: ProcessPoolExecutor, count: int) -> None:
        for batch in islice(todo, count):
            pending.append((batch, pool.submit(encode_files, [str(f) for f in batch], config)))

    # fork (as torch's DataLoader does on Linux): workers need no re-import of the caller's main module
    pool = ProcessPoolExecutor(min(n_workers, len(batches)), mp_context=multiprocessing.get_context("fork"))
    try:
        submit(pool, n_workers * AHEAD)
        while pending:
            batch, future = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                pool.shutdown(wait=True, cancel_futures=True)
                # the tasks that were running or queued when it died; those done and cancelled are not suspects
                suspects = [batch] + [b for b, fut in pending if not fut.cancelled() and fut.exception() is not None]
                raise _died(suspects, config, root) from None
            submit(pool, 1)
            yield from zip(batch, results)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _died(suspects: list[list[Path]], config: str, root: Path | None) -> CorpusError:
    """The error for a worker process that died: each file of the tasks it may have been running
    is read again alone, in order, in a fresh process, to name the one that kills it."""
    import multiprocessing

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
    try:
        for path in (f for batch in suspects for f in batch):
            try:
                pool.submit(encode_files, [str(path)], config).result()
            except BrokenProcessPool:
                return CorpusError(f"{relative_name(path, root)} crashes the music reader (the worker process "
                                   "reading it died); move it out of the corpus")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    first, last = relative_name(suspects[0][0], root), relative_name(suspects[-1][-1], root)
    return CorpusError(f"a worker process died while reading the files {first} ... {last}, and none of "
                       "them kills one when read alone (out of memory?)")


def _results(files: list[Path], config: str, workers: int | None, root: Path | None = None
             ) -> Iterator[tuple[Path, list]]:
    """(file, encode_file's answer) for each file in order; [] for a file that is not music."""
    import multiprocessing

    n_workers = workers if workers is not None else default_workers()
    heavy = sum(f.suffix.lower() in HEAVY_SUFFIXES for f in files)
    midi = sum(f.suffix.lower() in MIDI_SUFFIXES for f in files)
    # where fork is unavailable the files are read here, one after another
    if (n_workers > 1 and (heavy >= POOL_MIN_FILES or midi >= POOL_MIN_MIDI)
            and "fork" in multiprocessing.get_all_start_methods()):
        yield from _pooled(files, config, n_workers, root)
        return
    for f in files:
        yield f, encode_files([str(f)], config)[0]


def load_music_corpus(spec: str, tokenizer: Tokenizer | None = None, progress: Progress | None = None,
                      report: Report | None = None, workers: int | None = None) -> TokenData:
    """Token stream of a music corpus, from the cache when it holds it.

    ``progress(task, done, total)`` hears about each file read; ``report(skipped, total)`` about
    the files skipped (also when the stream comes from the cache). ``workers``: processes that
    read a large folder (default ``default_workers()``; 1 reads every file in this process).
    """
    if tokenizer is None:
        tokenizer = MidiTokenizer(version=DEFAULT_VERSION)
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
    held_form = tokenizer.version >= 2  # training layouts of their own: keep the pieces as read too

    def chunks() -> Iterator:
        # meta is filled while write_cache consumes this; it writes meta after the last chunk
        offset = 0
        for i, (f, results) in enumerate(_results(files, config, workers, root)):
            if f.suffix.lower() not in MUSIC_SUFFIXES:
                meta["skipped"].append([relative_name(f, root), f"not a music file ({f.suffix or 'no suffix'})"])
                results = []
            for piece_name, ids, as_read, reason in results:
                if ids is None:
                    meta["skipped"].append([relative_name(f, root), reason])
                    continue
                meta["pieces"].append([piece_name, offset, int(len(ids))])
                offset += len(ids)
                yield (ids, as_read) if held_form else ids
            if progress:
                progress("reading music", i + 1, len(files))
        if not meta["pieces"]:
            reasons = "; ".join(f"{n}: {r}" for n, r in meta["skipped"][:3])
            raise CorpusError(f"no readable music in {spec!r}: all {len(files)} file(s) were skipped ({reasons})")

    data = write_cache(key, chunks(), tokenizer, name, meta, held_form)
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
