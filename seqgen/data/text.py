"""Text corpora -> one cached token stream of characters.

The text is read in chunks, so a corpus larger than memory still trains: one pass hashes the
bytes (the cache key), one checks the encoding and collects the characters, one writes the
ids. ``progress(task, done, total)`` hears about each pass in bytes.

Memory does not grow with the corpus: a pass holds one chunk of bytes, its decoded text, its
code points (one byte each for ASCII text, four otherwise) and its ids, tens of megabytes at
``CHUNK`` = 4 MB. Characters are collected in a table indexed by code point and ids are looked up in
another, so a chunk costs two numpy operations, not a Python loop or a search per character.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from seqgen.data.cache import CACHE_FORMAT, TokenData, open_cached, write_cache
from seqgen.errors import CorpusError, TokenizerError
from seqgen.tokenizers import CharTokenizer, Tokenizer

CHUNK = 1 << 22  # bytes read at a time; a pass holds a small multiple of this
CODEPOINTS = 0x110000  # every Unicode code point, surrogates included
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
            yield current, tail
        if last and last != "\n" and len(files) > 1:
            yield current, "\n"

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
            yield f, text
    if current is not None:
        yield from finish(current)


def _codepoints(text: str) -> np.ndarray:
    """The code points of ``text``: uint8 for ASCII text (a quarter of the memory), else uint32."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    # surrogatepass: a lone surrogate is a character like any other, as CharTokenizer.encode has it
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _id_table(tokenizer: CharTokenizer) -> np.ndarray:
    """Code point -> id, in the cache's dtype; code points outside the vocabulary hold the dtype's max."""
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32
    table = np.full(CODEPOINTS, np.iinfo(dtype).max, dtype=dtype)
    table[[ord(c) for c in tokenizer.chars]] = np.arange(len(tokenizer.chars), dtype=dtype)
    return table


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
        seen = np.zeros(CODEPOINTS, dtype=bool)
        for _, text in _decoded(files, encoding, progress, "checking text"):
            seen[_codepoints(text)] = True
        if not seen.any():
            raise CorpusError(f"corpus {name!r} is empty")
        tokenizer = CharTokenizer.from_chars(map(chr, np.flatnonzero(seen).tolist()))
    table = _id_table(tokenizer) if isinstance(tokenizer, CharTokenizer) else None
    missing = np.iinfo(table.dtype).max if table is not None else 0

    docs = Documents()

    def encoded() -> Iterator[np.ndarray]:
        for f, text in _decoded(files, encoding, progress, "tokenizing text"):
            docs.read(f, text)
            if table is not None:
                ids = table[_codepoints(text)]
                if ids.max(initial=0) != missing:
                    yield ids
                    continue
            try:  # another tokenizer, or characters outside the vocabulary: the tokenizer names them
                ids = tokenizer.encode(text)
            except TokenizerError as e:
                raise CorpusError(f"corpus {name!r} does not fit the model's vocabulary: {e}") from None
            yield ids

    meta = {"files": len(files), "encoding": encoding, "documents": docs.rows}
    return write_cache(key, encoded(), tokenizer, name, meta)  # meta is read after the last chunk


class Documents:
    """Where each document of a text corpus starts and ends in its token stream: every file is a
    document, and in ABC notation (``.abc``) every tune (a line starting ``X:``), so a corpus of
    tune books holds out whole tunes. One character is one token."""

    def __init__(self) -> None:
        self.rows: list[list] = []  # [name, offset, length]
        self.offset = 0
        self.file: Path | None = None
        self.after_newline = True

    def _start(self, name: str) -> None:
        if self.rows:
            self.rows[-1][2] = self.offset - self.rows[-1][1]
        self.rows.append([name, self.offset, 0])

    def read(self, f: Path, text: str) -> None:
        if f != self.file:
            self.file, self.after_newline, self.tunes = f, True, 0
            self._start(f.name)
        if f.suffix.lower() == ".abc":
            starts = [m.start() for m in re.finditer(r"(?m)^X:", text)]
            for p in starts:
                if p == 0 and not self.after_newline:
                    continue
                if self.offset + p > self.rows[-1][1]:  # a new tune (the file's first one is its start)
                    self.tunes += 1
                    self.rows.append([f"{f.name}#{self.tunes}", self.offset + p, 0])
                    self.rows[-2][2] = self.offset + p - self.rows[-2][1]
        self.offset += len(text)
        self.after_newline = text.endswith("\n")
        self.rows[-1][2] = self.offset - self.rows[-1][1]
