"""Token streams on disk: ``<key>.bin`` (a 16-byte header, then the ids as a memmap) and
``<key>.json`` (its description), keyed by the corpus content, so a second run with the same
content starts at once. An entry whose size or header does not match its description (a crash
while it was written, a disk error) is rebuilt, with a ``CacheRebuilt`` warning saying so."""

from __future__ import annotations

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

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """The last ``val_fraction`` of the stream is validation (as nanoGPT's shakespeare_char)."""
        n = len(self)
        n_val = int(round(n * val_fraction))
        return self.tokens[: n - n_val], self.tokens[n - n_val :]


def write_cache(key: str, chunks: Iterator[np.ndarray], tokenizer: Tokenizer, name: str, meta: dict) -> TokenData:
    """Write id chunks to ``<key>.bin`` and its JSON description, each atomically."""
    folder = cache_dir()
    dtype = np.uint16 if tokenizer.vocab_size <= 65535 else np.uint32
    n = 0
    with atomic_path(folder / f"{key}.bin") as tmp:
        with open(tmp, "wb") as fh:
            fh.write(HEADER.pack(MAGIC, 0))
            for ids in chunks:
                fh.write(np.asarray(ids, dtype=dtype).tobytes())
                n += len(ids)
            if n == 0:
                raise CorpusError(f"corpus {name!r} is empty")
            fh.seek(0)
            fh.write(HEADER.pack(MAGIC, n))
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
        with open(bpath, "rb") as fh:
            magic, count = HEADER.unpack(fh.read(HEADER.size))
        size = bpath.stat().st_size
        if magic != MAGIC or count != n or size != HEADER.size + n * dtype.itemsize:
            raise ValueError(f"{size:,} bytes with header {magic!r}/{count:,} where {n:,} tokens were written")
        tokens = np.memmap(bpath, dtype=dtype, mode="r", offset=HEADER.size, shape=(n,))
    except (ValueError, KeyError, OSError, struct.error, TypeError) as e:
        warnings.warn(f"the token cache {bpath} is damaged ({e}); rebuilding it", CacheRebuilt, stacklevel=2)
        return None
    return TokenData(tokens, tokenizer_from_dict(info["tokenizer"]), info.get("source", ""), info.get("meta", {}))
