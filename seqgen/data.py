"""Corpus -> token stream on disk (a memmap keyed by the corpus content) -> batches.

A text corpus is read in chunks, so a corpus larger than memory still trains: one pass
hashes the bytes (the cache key), one checks UTF-8 and collects the characters, one writes
the ids. A second run with the same content finds the cache and starts at once.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from seqgen.errors import CorpusError, TokenizerError
from seqgen.tokenizers import CharTokenizer, tokenizer_from_dict

CHUNK = 1 << 24  # bytes read at a time
CACHE_FORMAT = 1
MUSIC_SUFFIXES = {".mid", ".midi", ".xml", ".mxl", ".musicxml", ".abc", ".krn"}


def cache_dir() -> Path:
    root = os.environ.get("SEQGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "seqgen")
    return Path(root) / "tokens"


@dataclass
class TokenData:
    """A corpus as one stream of token ids, with the tokenizer that made it."""

    tokens: np.ndarray  # (N,) memmap of uint16/uint32 ids
    tokenizer: Any
    source: str
    meta: dict

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """The last ``val_fraction`` of the stream is validation (as nanoGPT's shakespeare_char)."""
        n = len(self)
        n_val = int(round(n * val_fraction))
        return self.tokens[: n - n_val], self.tokens[n - n_val :]


# ---- resolving CORPUS ----------------------------------------------------------------------
def corpus_kind(spec: str) -> str:
    """'text' or 'music' for a corpus argument (a path or a built-in name)."""
    from seqgen.corpora import get_builtin

    path = Path(spec).expanduser()
    if not path.exists():
        builtin = get_builtin(spec)
        if builtin is None:
            from seqgen.corpora import BUILTIN

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
    from seqgen.corpora import get_builtin

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


def load_corpus(spec: str, encoding: str = "utf-8", tokenizer=None, **music_options) -> TokenData:
    """Read any corpus argument into a cached token stream.

    ``tokenizer`` (from a checkpoint, when resuming) fixes the vocabulary instead of
    building it from the corpus.
    """
    if corpus_kind(spec) == "music":
        from seqgen.music.corpus import load_music_corpus

        data = load_music_corpus(spec, tokenizer=tokenizer, **music_options)
    else:
        files, name = text_files(spec)
        data = load_text(files, name=name, encoding=encoding, tokenizer=tokenizer)
    path = Path(spec).expanduser()
    data.meta = {**data.meta, "spec": str(path.resolve()) if path.exists() else spec}
    return data


# ---- text ----------------------------------------------------------------------------------
def _read_chunks(files: list[Path]) -> Iterator[tuple[Path, int, bytes]]:
    for f in files:
        try:
            with open(f, "rb") as fh:
                offset = 0
                while chunk := fh.read(CHUNK):
                    yield f, offset, chunk
                    offset += len(chunk)
        except OSError as e:
            raise CorpusError(f"cannot read {f}: {e.strerror}") from None


def _decoded(files: list[Path], encoding: str) -> Iterator[str]:
    """Decode every file in turn, checking it; each file is followed by a newline if it lacks one."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}") from None
    for f in files:
        decoder = codecs.getincrementaldecoder(encoding)("strict")
        last = ""
        size = 0
        for _, offset, chunk in _read_chunks([f]):
            size += len(chunk)
            if offset == 0 and b"\x00" in chunk[:8192] and encoding.lower().replace("-", "") in ("utf8", "ascii"):
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
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise CorpusError(f"{f} is not valid {encoding}: it ends inside a multi-byte character") from None
        if tail:
            last = tail[-1]
            yield tail
        if size and last != "\n" and len(files) > 1:
            yield "\n"


def corpus_key(files: list[Path], encoding: str) -> str:
    h = hashlib.sha256(f"seqgen-tokens-v{CACHE_FORMAT}|{encoding}|".encode())
    for _, _, chunk in _read_chunks(files):
        h.update(chunk)
    h.update(str(len(files)).encode())
    return h.hexdigest()[:32]


def load_text(files: list[Path], name: str, encoding: str = "utf-8", tokenizer=None) -> TokenData:
    """Token stream of text files, from the cache when it holds them.

    With ``tokenizer`` (a trained model's vocabulary) the text is encoded with it; characters
    outside it are an error.
    """
    key = corpus_key(files, encoding)
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
        for text in _decoded(files, encoding):
            chars.update(text)
        if not chars:
            raise CorpusError(f"corpus {name!r} is empty")
        tokenizer = CharTokenizer.from_chars(chars)

    def encoded() -> Iterator[np.ndarray]:
        for text in _decoded(files, encoding):
            try:
                yield tokenizer.encode(text)
            except TokenizerError as e:
                raise CorpusError(f"corpus {name!r} does not fit the model's vocabulary: {e}") from None

    return write_cache(key, encoded(), tokenizer, name, {"files": len(files), "encoding": encoding})


def write_cache(key: str, chunks: Iterator[np.ndarray], tokenizer, name: str, meta: dict) -> TokenData:
    """Write id chunks to ``<key>.bin`` (temp file, then rename) and its JSON description."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32
    tmp = folder / f"{key}.bin.tmp{os.getpid()}"
    n = 0
    try:
        with open(tmp, "wb") as fh:
            for ids in chunks:
                fh.write(np.asarray(ids, dtype=dtype).tobytes())
                n += len(ids)
        if n == 0:
            raise CorpusError(f"corpus {name!r} is empty")
        # ``meta`` is read only now, after the last chunk: music corpora fill it while they are read.
        info = {"format": CACHE_FORMAT, "tokens": n, "dtype": np.dtype(dtype).name,
                "tokenizer": tokenizer.to_dict(), "source": name, "meta": meta}
        tmp_json = folder / f"{key}.json.tmp{os.getpid()}"
        tmp_json.write_text(json.dumps(info))
        os.replace(tmp, folder / f"{key}.bin")
        os.replace(tmp_json, folder / f"{key}.json")
    finally:
        tmp.unlink(missing_ok=True)
    result = open_cached(key)
    assert result is not None
    return result


def open_cached(key: str) -> TokenData | None:
    folder = cache_dir()
    jpath, bpath = folder / f"{key}.json", folder / f"{key}.bin"
    if not (jpath.exists() and bpath.exists()):
        return None
    try:
        info = json.loads(jpath.read_text())
        if info.get("format") != CACHE_FORMAT:
            return None
        tokens = np.memmap(bpath, dtype=info["dtype"], mode="r", shape=(info["tokens"],))
    except (ValueError, KeyError, OSError):
        return None  # a damaged cache entry is rebuilt
    return TokenData(tokens, tokenizer_from_dict(info["tokenizer"]), info.get("source", ""), info.get("meta", {}))


# ---- batches -------------------------------------------------------------------------------
def random_windows(tokens: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, length + 1) int64 windows starting at random offsets."""
    starts = rng.integers(0, len(tokens) - length, size=batch)
    index = starts[:, None] + np.arange(length + 1)[None, :]
    return np.asarray(tokens[index], dtype=np.int64)


class StreamBatcher:
    """Truncated-BPTT batches: row i reads its own stretch of the corpus, window after window,
    so the hidden state can be carried from one window to the next (char-rnn's stateful training).

    ``next()`` returns the (batch, length + 1) windows and a (batch,) bool mask of rows that
    started over (their carried state must be reset).
    """

    def __init__(self, tokens: np.ndarray, batch: int, length: int, rng: np.random.Generator):
        self.tokens, self.batch, self.length, self.rng = tokens, batch, length, rng
        self.stride = max(length + 1, (len(tokens) - 1) // batch)
        self.pos = self._starts()
        self.used = np.zeros(batch, dtype=np.int64)

    def _starts(self) -> np.ndarray:
        shift = int(self.rng.integers(0, self.stride))
        return (np.arange(self.batch) * self.stride + shift) % max(1, len(self.tokens) - self.length - 1)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        reset = (self.pos + self.length + 1 > len(self.tokens)) | (self.used + self.length > self.stride)
        if reset.any():
            fresh = self.rng.integers(0, len(self.tokens) - self.length - 1, size=int(reset.sum()))
            self.pos[reset] = fresh
            self.used[reset] = 0
        index = self.pos[:, None] + np.arange(self.length + 1)[None, :]
        x = np.asarray(self.tokens[index], dtype=np.int64)
        self.pos += self.length
        self.used += self.length
        return x, reset

    def state_dict(self) -> dict:
        return {"pos": self.pos.tolist(), "used": self.used.tolist()}
