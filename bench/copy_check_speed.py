"""How fast the copy check is: building the suffix-array index of a 1 MB text corpus, loading it
from the cache, and checking 2,000-character samples (targets: build under 2 s, check under 50 ms).

    python bench/copy_check_speed.py                       # tinyshakespeare from ../shared/corpora
    python bench/copy_check_speed.py --corpus FILE --repeat 20

Samples: held-out text (the validation tail: realistic prose that shares short phrases with
training), a 2,000-character stretch copied from training (the slowest case: every position
matches at length), and random characters. Figures are medians of --repeat runs; say whether
the machine was busy when you quote them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
SHAKESPEARE = HERE.parent.parent / "shared" / "corpora" / "tinyshakespeare.txt"


def median_time(f, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--length", type=int, default=2000, help="characters per sample")
    args = ap.parse_args()
    if not args.corpus.exists():
        sys.exit(f"{args.corpus} is absent; pass --corpus FILE")
    os.environ["SEQGEN_CACHE"] = tempfile.mkdtemp(prefix="seqgen-bench-")  # a cold cache of its own

    import numpy as np

    from seqgen.copies import CopyIndex, training_index, training_segments
    from seqgen.data.load import load_corpus

    data = load_corpus(str(args.corpus))
    segments = training_segments(data, 0.1, "tail")
    build, index = median_time(lambda: CopyIndex.build(data, segments), max(1, args.repeat // 3))
    training_index(data, 0.1, "tail")  # writes the cache entry
    cached, _ = median_time(lambda: training_index(data, 0.1, "tail"), args.repeat)
    n = len(data)
    train_end = sum(length for _, _, length in segments)
    tokens = np.asarray(data.tokens, dtype=np.int64)
    rng = np.random.default_rng(0)
    samples = {
        "held-out text": tokens[train_end : train_end + args.length],
        "copied from training": tokens[n // 3 : n // 3 + args.length],
        "random characters": rng.integers(0, data.tokenizer.vocab_size - 5, args.length),
    }
    print(f"corpus {args.corpus.name}: {n:,} characters, {train_end:,} in the training split")
    print(f"index build {build:.3f} s (suffix array of {len(index.symbols):,} symbols); "
          f"open from the cache {cached * 1000:.1f} ms")
    for name, ids in samples.items():
        t, found = median_time(lambda ids=ids: index.check(ids), args.repeat)
        print(f"check of {len(ids):,} characters, {name:<21} {t * 1000:6.1f} ms  longest {found.longest:>5}  "
              f"share {found.share:.3f}")


if __name__ == "__main__":
    main()
