"""A multitrack corpus from music21's own: string quartets (Haydn, Mozart, Beethoven) and
Monteverdi's madrigals, written out as MIDI files with one track per part (named as the part).

    python bench/multitrack_corpus.py OUT_FOLDER [--pieces 24]

``bench/defaults_matrix.py --rows quartets`` trains on it (2 minutes) beside the chorales.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_corpus(out: Path, pieces: int = 24) -> list[Path]:
    """Up to ``pieces`` scores of at least three parts, half quartets and half madrigals, in a
    fixed order; returns the files written."""
    from music21 import corpus

    from seqgen.errors import MusicFileError
    from seqgen.music.files import read_music21, write_piece

    out.mkdir(parents=True, exist_ok=True)
    quartets = [p for c in ("haydn", "mozart", "beethoven") for p in corpus.getComposer(c)
                if str(p).endswith((".mxl", ".xml", ".krn"))]
    madrigals = [p for p in corpus.getComposer("monteverdi") if str(p).endswith((".mxl", ".xml", ".krn"))]
    written: list[Path] = []
    for group in (sorted(quartets), sorted(madrigals)):
        count = 0
        for path in group:
            if count >= pieces // 2:
                break
            try:
                piece = read_music21(Path(path))[0]
            except MusicFileError:
                continue
            if len(piece.tracks) < 3:
                continue
            target = out / f"{Path(path).parent.name}-{Path(path).stem}.mid"
            written.append(write_piece(piece, target))
            count += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--pieces", type=int, default=24)
    a = ap.parse_args()
    files = write_corpus(a.out, a.pieces)
    print(f"wrote {len(files)} multitrack MIDI files to {a.out}")


if __name__ == "__main__":
    main()
