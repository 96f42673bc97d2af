"""Does a sample copy its training data? A suffix array over the training sequence answers, for
each position of the sample, the longest stretch starting there that also occurs in training
(its matching statistics), from which come the longest copied stretch, where it is, and the share
of the sample's fixed-length patterns found in training.

- text: the sequence is the training tokens (characters); patterns are 20 characters long;
- music: the sequence is one symbol per note after the first, (melodic interval, onset step), the
  notes in onset then pitch order, so a transposed copy is still a copy; patterns are 8 notes long,
  and the place is a training piece's name and bar numbers.

The suffix array comes from libdivsufsort (pydivsufsort): about 0.1 s per million characters.
An index is cached beside the token cache (``$SEQGEN_CACHE/copies``), keyed by the training
tokens' content; a lookup is one binary search per sample position.
"""

from __future__ import annotations

import hashlib
import json
from bisect import bisect_left
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from seqgen.data.cache import TokenData, cache_root
from seqgen.data.split import documents
from seqgen.fileio import atomic_path
from seqgen.music.piece import DRUMS, Piece

INDEX_FORMAT = 2  # 2: the suffixes' 8-byte keys are stored
TEXT_SPAN = 20  # characters per text pattern
MUSIC_SPAN = 8  # notes per music pattern
STEPS_PER_QUARTER = 24  # onset steps are quantized to 1/24 of a quarter note
MAX_INDEX_TOKENS = 20_000_000  # the default check indexes training sets up to this many tokens (about 3 s to build)
MAX_QUERY = 4096  # the longest stretch compared at one position (symbols)
KEY = 64  # symbols compared in the first binary search at each position


@dataclass
class Copies:
    """What of a sample occurs in training: ``longest`` stretch (in ``unit``), ``where`` it is
    (document and offset, or piece and bars), and ``share`` of the sample's ``span``-long patterns
    found in training (``patterns`` of them; 0 patterns: share is 0)."""

    longest: int
    unit: str  # "characters" or "notes"
    where: dict | None
    share: float
    span: int
    patterns: int

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        place = ""
        if self.where:
            w = self.where
            place = (f" (in {w['document']}, bars {w['bars'][0]}-{w['bars'][1]})" if "bars" in w
                     else f" (in {w['document']} at offset {w['offset']:,})")
        return (f"copy check: longest stretch found in training {self.longest} {self.unit}{place}; "
                f"{self.share:.0%} of {self.patterns} {self.span}-{self.unit[:-1]} patterns occur in training")


@dataclass
class CopyIndex:
    kind: str  # "text" or "music"
    symbols: np.ndarray  # (N,) big-endian unsigned ids; 0 separates music pieces
    sa: np.ndarray  # (N,) suffix array of ``symbols``
    starts: np.ndarray  # (D,) where each document begins in ``symbols``
    names: list[str]
    offsets: np.ndarray  # (D,) text: each document's offset in its own tokens
    vocab: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # music: sorted raw symbols
    bar_from: np.ndarray = field(
        default_factory=lambda: np.zeros(0, dtype=np.int32)
    )  # music: bar of each symbol's first note
    bar_to: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # and of its second
    keys: np.ndarray | None = None  # (N,) the first 8 bytes of each suffix in suffix-array order (uint64)

    def __post_init__(self) -> None:
        self._bytes = self.symbols.tobytes()
        self._w = self.symbols.dtype.itemsize
        # a memoryview indexes to Python ints, faster than an array (for the binary searches)
        self._sa_view = memoryview(np.ascontiguousarray(self.sa, dtype=np.int64))
        if self.keys is None:
            self.keys = prefix_keys(self._bytes, len(self.symbols), self._w, self.sa)

    # ---- building -------------------------------------------------------------------------
    @classmethod
    def build(cls, data: TokenData, train: list[tuple[str, int, int]]) -> "CopyIndex":
        """An index over the training ``(name, offset, length)`` segments of ``data``'s stream."""
        if data.tokenizer.kind == "music":
            return cls._build_music(data, train)
        parts, starts, names, offsets, at = [], [], [], [], 0
        for name, offset, length in train:
            parts.append(np.asarray(data.tokens[offset : offset + length], dtype=np.int64))
            starts.append(at)
            names.append(name)
            offsets.append(0)
            at += length
        raw = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        # 0 is kept free, so that the sample's unknown characters match nothing; the width holds every id
        symbols = _narrow(raw + 1, top=data.tokenizer.vocab_size + 1)
        return cls("text", symbols, suffix_array(symbols), np.asarray(starts, dtype=np.int64), names,
                   np.asarray(offsets, dtype=np.int64))

    @classmethod
    def _build_music(cls, data: TokenData, train) -> "CopyIndex":
        tok = data.tokenizer
        raws, bars_a, bars_b, starts, names, at = [], [], [], [], [], 0
        for name, offset, length in train:
            piece = tok.decode(np.asarray(data.tokens[offset : offset + length], dtype=np.int64), name=name)
            raw, b0, b1 = note_symbols(piece)
            starts.append(at)
            names.append(name)
            raws.append(raw)
            bars_a.append(b0)
            bars_b.append(b1)
            at += len(raw) + 1
        raw = np.concatenate([np.append(r, -1) for r in raws]) if raws else np.zeros(0, dtype=np.int64)
        vocab = np.unique(raw[raw >= 0])
        ids = np.where(raw >= 0, np.searchsorted(vocab, raw) + 1, 0)  # 0: the piece separator
        symbols = _narrow(ids, top=len(vocab) + 1)

        def pad(parts):
            return np.concatenate([np.append(p, 0) for p in parts]).astype(np.int32) if parts else np.zeros(0, np.int32)

        return cls("music", symbols, suffix_array(symbols), np.asarray(starts, dtype=np.int64), names,
                   np.zeros(len(names), dtype=np.int64), vocab, pad(bars_a), pad(bars_b))

    # ---- saving ---------------------------------------------------------------------------
    def save(self, path: Path) -> Path:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, kind=np.array(self.kind), symbols=self.symbols, sa=self.sa, starts=self.starts,
                         names=np.array(json.dumps(self.names)), offsets=self.offsets, vocab=self.vocab,
                         bar_from=self.bar_from, bar_to=self.bar_to, keys=self.keys, format=np.array(INDEX_FORMAT))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "CopyIndex | None":
        try:
            with np.load(path, allow_pickle=False) as z:
                if int(z["format"]) != INDEX_FORMAT:
                    return None
                return cls(str(z["kind"]), z["symbols"], z["sa"], z["starts"], json.loads(str(z["names"])),
                           z["offsets"], z["vocab"], z["bar_from"], z["bar_to"], z["keys"])
        except (OSError, ValueError, KeyError):  # a damaged or older file is rebuilt
            return None

    # ---- checking -------------------------------------------------------------------------
    def check(self, sample) -> Copies:
        """``sample`` (text token ids for a text index, a ``Piece`` for a music index) against training."""
        if self.kind == "music":
            raw, *_ = note_symbols(sample)
            pos = np.searchsorted(self.vocab, raw)
            known = np.zeros(len(raw), dtype=bool)
            inside = pos < len(self.vocab)
            known[inside] = self.vocab[pos[inside]] == raw[inside]
            query = np.where(known, pos + 1, len(self.vocab) + 1)  # a symbol training never has matches nothing
        else:
            query = np.asarray(sample, dtype=np.int64) + 1
        top = np.iinfo(self.symbols.dtype.newbyteorder("=")).max
        query = np.where((query >= 0) & (query <= top), query, 0).astype(self.symbols.dtype)  # 0 matches no text
        ms, at = self.matching_statistics(query)
        span = MUSIC_SPAN - 1 if self.kind == "music" else TEXT_SPAN  # symbols per pattern
        patterns = max(0, len(query) - span + 1)
        share = float((ms[:patterns] >= span).mean()) if patterns else 0.0
        best = int(np.argmax(ms)) if len(ms) else 0
        length = int(ms[best]) if len(ms) else 0
        where = self._where(int(at[best]), length) if length else None
        if self.kind == "music":
            n_notes = len(query) + 1 if len(sample) else 0
            return Copies(
                length + 1 if length else min(1, n_notes), "notes", where, round(share, 4), MUSIC_SPAN, patterns
            )
        return Copies(length, "characters", where, round(share, 4), TEXT_SPAN, patterns)

    def matching_statistics(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ms, at): for each position i of ``query``, the length of the longest prefix of query[i:]
        that occurs in the training sequence, and one place where it does.

        The longest match is with a neighbour of the query's place in the suffix array. That place
        is found for every position at once on the suffixes' first 8 bytes (``np.searchsorted`` over
        ``keys``); only positions that share all 8 with some suffix go on to a binary search within
        those suffixes, comparing bytes slices (memcmp), and a match's length is found by galloping."""
        w, data, sa = self._w, self._bytes, self._sa_view
        qb = np.ascontiguousarray(query, dtype=self.symbols.dtype).tobytes()
        n = len(query)
        ms = np.zeros(n, dtype=np.int64)
        at = np.zeros(n, dtype=np.int64)
        if not len(self.sa) or not n:
            return ms, at
        qkeys = prefix_keys(qb, n, w)
        lo = np.searchsorted(self.keys, qkeys, side="left")
        hi = np.searchsorted(self.keys, qkeys, side="right")
        rest = np.minimum(n - np.arange(n), MAX_QUERY)
        # positions no suffix shares 8 bytes with: the lcp is within the keys of the two neighbours
        short = np.flatnonzero(lo == hi)
        best = np.zeros(len(short), dtype=np.int64)
        place = np.zeros(len(short), dtype=np.int64)
        for nb in (lo[short] - 1, lo[short]):
            ok = (nb >= 0) & (nb < len(self.sa))
            nbc = np.clip(nb, 0, len(self.sa) - 1)
            diff = (qkeys[short] ^ self.keys[nbc]).astype(">u8").view(np.uint8).reshape(-1, 8)
            same = np.where(diff.any(axis=1), np.argmax(diff != 0, axis=1), 8) // w
            same = np.where(ok, np.minimum(same, rest[short]), 0)
            better = same > best
            best = np.where(better, same, best)
            place = np.where(better, self.sa[nbc], place)
        ms[short], at[short] = best, place

        def lcp(p: int, i: int, limit: int, known: int) -> int:
            lo_, hi_ = known, max(2 * known, 1)
            while hi_ <= limit and data[p * w : (p + hi_) * w] == qb[i * w : (i + hi_) * w]:
                lo_, hi_ = hi_, hi_ * 2
            hi_ = min(hi_, limit + 1)
            while hi_ - lo_ > 1:
                mid = (lo_ + hi_) // 2
                if data[p * w : (p + mid) * w] == qb[i * w : (i + mid) * w]:
                    lo_ = mid
                else:
                    hi_ = mid
            return lo_

        for i in np.flatnonzero(lo < hi).tolist():  # a stretch of 8 bytes or more occurs in training
            a, b, r = int(lo[i]), int(hi[i]), int(rest[i])
            known = min(8 // w, r)
            for m in ((KEY, r) if r > KEY else (r,)):
                key = qb[i * w : (i + m) * w]
                k = bisect_left(sa, key, a, b, key=lambda p, m=m: data[p * w : (p + m) * w])
                top, where = 0, 0
                for j in (k - 1, k):
                    if a <= j < b:
                        p = sa[j]
                        length = lcp(p, i, r, known)
                        if length > top:
                            top, where = length, p
                ms[i], at[i] = top, where
                if top < m:
                    break
        return ms, at

    def _where(self, p: int, length: int) -> dict:
        d = int(np.searchsorted(self.starts, p, side="right") - 1)
        if self.kind == "music":
            return {"document": self.names[d], "bars": [int(self.bar_from[p]), int(self.bar_to[p + length - 1])]}
        return {"document": self.names[d], "offset": int(self.offsets[d] + p - self.starts[d])}


def prefix_keys(data: bytes, n: int, w: int, starts: np.ndarray | None = None) -> np.ndarray:
    """(len(starts),) the first 8 bytes after each symbol start (default: every one of ``n``) as
    big-endian uint64, zero past the end: sorted as the suffixes are."""
    u8 = np.frombuffer(data + bytes(8), dtype=np.uint8)
    at = (np.arange(n, dtype=np.int64) if starts is None else np.asarray(starts, dtype=np.int64)) * w
    keys = np.zeros(len(at), dtype=np.uint64)
    for k in range(8):
        keys = (keys << np.uint64(8)) | u8[at + k].astype(np.uint64)
    return keys


def text_ids(tokenizer, text: str) -> np.ndarray:
    """Token ids of ``text``; characters outside the vocabulary become -1 (they match nothing)."""
    bad = set(tokenizer.unknown(text))
    if not bad:
        return tokenizer.encode(text)
    return np.array([-1 if c in bad else int(tokenizer.encode(c)[0]) for c in text], dtype=np.int64)


def suffix_array(symbols: np.ndarray) -> np.ndarray:
    """The suffix array of a big-endian unsigned sequence (libdivsufsort sorts bytes: a wider
    symbol is sorted as its bytes, keeping the suffixes that start on a symbol boundary)."""
    from pydivsufsort import divsufsort

    if not len(symbols):
        return np.zeros(0, dtype=np.int32)
    w = symbols.dtype.itemsize
    sa = divsufsort(bytes(symbols.tobytes()))
    return sa if w == 1 else (sa[sa % w == 0] // w).astype(sa.dtype)


def _narrow(ids: np.ndarray, top: int | None = None) -> np.ndarray:
    top = int(ids.max()) if top is None and len(ids) else (top or 0)
    dtype = ">u1" if top < 256 else ">u2" if top < 65536 else ">u4"
    return np.asarray(ids).astype(dtype)


def note_symbols(piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(symbols, bar of each symbol's first note, bar of its second): one symbol per note after the
    first in onset-then-pitch order, packing the interval from the note before and the onset step."""
    m = piece.program != DRUMS
    t, p = piece.time[m], piece.pitch[m]
    order = np.lexsort((p, t))
    t, p = t[order], p[order]
    if len(t) < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int32)
    step = np.clip(np.rint(np.diff(t) * STEPS_PER_QUARTER / piece.tpq), 0, 4095).astype(np.int64)
    interval = np.diff(p).astype(np.int64) + 127
    starts = np.asarray(piece.info.get("bar_starts") or [0], dtype=np.float64)
    bar = np.searchsorted(starts, t, side="right").astype(np.int32)  # 1-based bar of each note
    return step * 256 + interval, bar[:-1], bar[1:]


# ---- the index of a run's training set, cached -----------------------------------------------
def index_dir() -> Path:
    return cache_root() / "copies"


def training_segments(data: TokenData, val_fraction: float, mode: str) -> list[tuple[str, int, int]]:
    """The (name, offset, length) stretches of ``data``'s stream that training read."""
    from seqgen.data.split import split

    parts = split(data, val_fraction, mode)
    docs = documents(data) or [(data.source or "corpus", 0, len(data))]
    if parts.mode == "documents":
        held = set(parts.held_out)
        return [d for d in docs if d[0] not in held]
    end = len(parts.train)
    return [(name, off, min(length, end - off)) for name, off, length in docs if off < end]


def training_index(data: TokenData, val_fraction: float, mode: str) -> CopyIndex:
    """The copy index of the training part of ``data``, from the cache when it is there."""
    segments = training_segments(data, val_fraction, mode)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps([INDEX_FORMAT, data.tokenizer.to_dict(), segments]).encode())
    digest.update(np.ascontiguousarray(data.tokens).tobytes())
    path = index_dir() / f"{digest.hexdigest()}.npz"
    if path.exists():
        index = CopyIndex.load(path)
        if index is not None:
            return index
    index = CopyIndex.build(data, segments)
    index.save(path)
    return index


def run_index(spec: str | None, tokenizer, val_fraction: float, mode: str, encoding: str = "utf-8",
              limit: int = MAX_INDEX_TOKENS) -> tuple[CopyIndex | None, str]:
    """(index, "") for the training set of a run whose corpus is ``spec``, or (None, why not):
    no corpus recorded, the corpus not at hand, or more than ``limit`` tokens."""
    from seqgen.data.load import load_corpus
    from seqgen.errors import SeqgenError

    if not spec:
        return None, "the model does not record its training corpus"
    try:
        data = load_corpus(spec, encoding=encoding, tokenizer=tokenizer)
    except SeqgenError as e:
        return None, f"its training corpus {spec} is not at hand ({str(e).splitlines()[0][:100]})"
    except ImportError as e:  # a music corpus read where music21 is not installed (an ONNX-only machine)
        return None, f"its training corpus {spec} cannot be read here ({e})"
    if len(data) > limit:
        return None, f"its training corpus has {len(data):,} tokens, more than the {limit:,} indexed by default"
    return training_index(data, val_fraction, mode), ""
