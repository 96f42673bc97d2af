"""Text corpora -> one cached token stream of characters.

The text is read in chunks, so a corpus larger than memory still trains: one pass hashes the
bytes (the cache key), one checks the encoding and collects the characters, one writes the
ids. ``progress(task, done, total)`` hears about each pass in bytes.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from seqgen.data.cache import CACHE_FORMAT, TokenData, open_cached, write_cache
from seqgen.errors import CorpusError, TokenizerError
from seqgen.tokenizers import CharTokenizer, Tokenizer

CHUNK = 1 << 24  # bytes read at a time
Progress = Callable[[str, int, int], None]  # (task, done, total)


def _read_chunks(files: list[Path], progress: Progress | None = None,
                 task: str = "reading") -> Iterator[tuple[Path, int, bytes]]:
    total = sum(_size(f) for f in files) if progress else 0
    done = 0
    for f in files:
        try:
            with open(f, "rb") as fh:
                offset = 0
                while chunk := fh.read(CHUNK):
                    yield f, offset, chunk
                    offset += len(chunk)
                    done += len(chunk)
                    if progress:
                        progress(task, done, total)
        except OSError as e:
            raise CorpusError(f"cannot read {f}: {e.strerror}") from None


def _size(f: Path) -> int:
    try:
        return f.stat().st_size
    except OSError:
        return 0


def _decoded(files: list[Path], encoding: str, progress: Progress | None = None,
             task: str = "reading") -> Iterator[str]:
    """Decode every file in turn, checking it; each file is followed by a newline if it lacks one."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    nul_is_binary = encoding.lower().replace("-", "") in ("utf8", "ascii")
    current: Path | None = None
    decoder = None
    last = ""

    def finish(f: Path) -> Iterator[str]:
        nonlocal last
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise CorpusError(f"{f} is not valid {encoding}: it ends inside a multi-byte character") from None
        if tail:
            last = tail[-1]
            yield tail
        if last and last != "\n" and len(files) > 1:
            yield "\n"

    for f, offset, chunk in _read_chunks(files, progress, task):
        if f != current:
            if current is not None:
                yield from finish(current)
            current, last = f, ""
            decoder = codecs.getincrementaldecoder(encoding)("strict")
        if offset == 0 and nul_is_binary and b"\x00" in chunk[:8192]:
            raise CorpusError(f"{f} looks like a binary file (it has NUL bytes), not text")
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as e:
            raise CorpusError(
                f"{f} is not valid {encoding}: byte 0x{e.object[e.start]:02x} at offset "
                f"{offset + e.start}; pass --encoding (e.g. --encoding latin-1) if it uses another"
            ) from None
        if text:
            last = text[-1]
            yield text
    if current is not None:
        yield from finish(current)


def corpus_key(files: list[Path], encoding: str, progress: Progress | None = None) -> str:
    h = hashlib.sha256(f"seqgen-tokens-v{CACHE_FORMAT}|{encoding}|".encode())
    for _, _, chunk in _read_chunks(files, progress, "hashing text"):
        h.update(chunk)
    h.update(str(len(files)).encode())
    return h.hexdigest()[:32]


def load_text(files: list[Path], name: str, encoding: str = "utf-8", tokenizer: Tokenizer | None = None,
              progress: Progress | None = None) -> TokenData:
    """Token stream of text files, from the cache when it holds them.

    With ``tokenizer`` (a trained model's vocabulary) the text is encoded with it; characters
    outside it are an error.
    """
    key = corpus_key(files, encoding, progress)
    cached = open_cached(key)
    if cached is not None and (tokenizer is None or cached.tokenizer == tokenizer):
        return cached
    if tokenizer is not None:
        key = hashlib.sha256((key + json.dumps(tokenizer.to_dict(), sort_keys=True)).encode()).hexdigest()[:32]
        cached = open_cached(key)
        if cached is not None:
            return cached
    else:
        chars: set[str] = set()
        for text in _decoded(files, encoding, progress, "checking text"):
            chars.update(text)
        if not chars:
            raise CorpusError(f"corpus {name!r} is empty")
        tokenizer = CharTokenizer.from_chars(chars)

    def encoded() -> Iterator[np.ndarray]:
        for text in _decoded(files, encoding, progress, "tokenizing text"):
            try:
                yield tokenizer.encode(text)
            except TokenizerError as e:
                raise CorpusError(f"corpus {name!r} does not fit the model's vocabulary: {e}") from None

    return write_cache(key, encoded(), tokenizer, name, {"files": len(files), "encoding": encoding})
