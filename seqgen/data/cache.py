"""Token streams on disk: ``<key>.bin`` (a 16-byte header, then the ids as a memmap) and
``<key>.json`` (its description), keyed by the corpus content, so a second run with the same
content starts at once. A music corpus whose training stream holds its pieces in a training
layout (tracks given first, controls dropped) also keeps ``<key>.held.bin``: every piece as it is
read, the form its held-out pieces are measured in. An entry whose size or header does not match
its description (a crash while it was written, a disk error) is rebuilt, with a ``CacheRebuilt``
warning saying so."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from seqgen.errors import CorpusError
from seqgen.fileio import atomic_path, write_json
from seqgen.tokenizers import Tokenizer, tokenizer_from_dict

CACHE_FORMAT = 3  # 3: text corpora record their documents
MAGIC = b"SQGNTOK2"
HEADER = struct.Struct("<8sQ")  # magic, number of tokens


class CacheRebuilt(UserWarning):
    """A damaged token cache entry was found and is being rebuilt (the CLI shows it as a note)."""


def cache_root() -> Path:
    """``~/.cache/seqgen``, or ``$SEQGEN_CACHE``."""
    return Path(os.environ.get("SEQGEN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "seqgen"))


def cache_dir() -> Path:
    return cache_root() / "tokens"


@dataclass
class TokenData:
    """A corpus as one stream of token ids, with the tokenizer that made it."""

    tokens: np.ndarray  # (N,) memmap of uint16/uint32 ids
    tokenizer: Tokenizer
    source: str
    meta: dict = field(default_factory=dict)
    # (M,) each document as it is read, where ``tokens`` holds it in a training layout; the rows of
    # ``meta["held_form"]`` ([offset, length], one per document) place them; None: ``tokens`` is that form
    held_form: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """The last ``val_fraction`` of the stream is validation (as nanoGPT's shakespeare_char)."""
        n = len(self)
        n_val = int(round(n * val_fraction))
        return self.tokens[: n - n_val], self.tokens[n - n_val :]


def write_cache(key: str, chunks: Iterator, tokenizer: Tokenizer, name: str, meta: dict,
                held_form: bool = False) -> TokenData:
    """Write id chunks to ``<key>.bin`` and its JSON description, each atomically. ``held_form``:
    each chunk is a document as (training ids, ids as read), the second written to
    ``<key>.held.bin`` (``TokenData.held_form``); both streams are in place before the description."""
    folder = cache_dir()
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32
    n = n_held = 0
    rows: list[list[int]] = []  # held_form: [offset, length] of each document as read
    with contextlib.ExitStack() as stack:

        def stream(path: Path):  # written to a temp file, renamed onto ``path`` when all went well
            fh = stack.enter_context(open(stack.enter_context(atomic_path(path)), "wb"))
            fh.write(HEADER.pack(MAGIC, 0))
            return fh

        files = [stream(folder / f"{key}.bin")] + ([stream(folder / f"{key}.held.bin")] if held_form else [])
        for chunk in chunks:
            ids, as_read = chunk if held_form else (chunk, None)
            files[0].write(np.asarray(ids, dtype=dtype).tobytes())
            n += len(ids)
            if held_form:
                files[1].write(np.asarray(as_read, dtype=dtype).tobytes())
                rows.append([n_held, int(len(as_read))])
                n_held += len(as_read)
        if n == 0:
            raise CorpusError(f"corpus {name!r} is empty")
        for fh, count in zip(files, (n, n_held)):
            fh.seek(0)
            fh.write(HEADER.pack(MAGIC, count))
    if held_form:
        meta = {**meta, "held_form": rows, "held_tokens": n_held}
    # ``meta`` is read only now, after the last chunk: music corpora fill it while they are read.
    write_json(folder / f"{key}.json", {"format": CACHE_FORMAT, "tokens": n, "dtype": np.dtype(dtype).name,
                                        "tokenizer": tokenizer.to_dict(), "source": name, "meta": meta})
    result = open_cached(key)
    assert result is not None, "a cache entry just written must open"
    return result


def open_cached(key: str) -> TokenData | None:
    """The cached stream for ``key``, or None (also for a damaged entry, which is then rebuilt)."""
    folder = cache_dir()
    jpath, bpath = folder / f"{key}.json", folder / f"{key}.bin"
    if not (jpath.exists() and bpath.exists()):
        return None
    try:
        info = json.loads(jpath.read_text())
        if info.get("format") != CACHE_FORMAT:
            return None  # an older format: rebuilt quietly
        n, dtype = int(info["tokens"]), np.dtype(info["dtype"])
        tokens = _open_stream(bpath, n, dtype)
        meta = info.get("meta", {})
        held = None
        if "held_form" in meta:
            hpath = folder / f"{key}.held.bin"
            held = _open_stream(hpath, int(meta["held_tokens"]), dtype)
            if len(meta["held_form"]) != len(meta.get("pieces", [])):
                raise ValueError(f"{hpath} places {len(meta['held_form'])} pieces of {len(meta.get('pieces', []))}")
    except (ValueError, KeyError, OSError, struct.error, TypeError) as e:
        warnings.warn(f"the token cache {bpath} is damaged ({e}); rebuilding it", CacheRebuilt, stacklevel=2)
        return None
    return TokenData(tokens, tokenizer_from_dict(info["tokenizer"]), info.get("source", ""), meta, held)


def _open_stream(path: Path, n: int, dtype: np.dtype) -> np.ndarray:
    """The memmap of a stream of ``n`` ids; ValueError (OSError) where the file does not hold them."""
    with open(path, "rb") as fh:
        magic, count = HEADER.unpack(fh.read(HEADER.size))
    size = path.stat().st_size
    if magic != MAGIC or count != n or size != HEADER.size + n * dtype.itemsize:
        raise ValueError(f"{size:,} bytes with header {magic!r}/{count:,} where {n:,} tokens were written")
    return np.memmap(path, dtype=dtype, mode="r", offset=HEADER.size, shape=(n,))
