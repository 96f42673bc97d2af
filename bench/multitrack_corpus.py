"""Multitrack corpora from music21's own, written out as MIDI files with one track per part
(named as the part): string quartets (Haydn, Mozart, Beethoven) with Monteverdi's madrigals
(``quartets``), the madrigals alone (``madrigals``), or Palestrina's mass movements for four to
six voices (``palestrina``, every 20th of music21's).

    python bench/multitrack_corpus.py OUT_FOLDER [--pieces 24] [--kind quartets|madrigals|palestrina]

``bench/defaults_matrix.py --rows quartets,madrigals,palestrina`` trains on them (2 minutes) beside
the chorales.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


KINDS = ("quartets", "madrigals", "palestrina")


def write_corpus(out: Path, pieces: int = 24, kind: str = "quartets") -> list[Path]:
    """Up to ``pieces`` scores of at least three parts of the ``kind`` in a fixed order; returns
    the files written."""
    from music21 import corpus

    from seqgen.errors import MusicFileError
    from seqgen.music.files import read_music21, write_piece

    out.mkdir(parents=True, exist_ok=True)
    quartets = [p for c in ("haydn", "mozart", "beethoven") for p in corpus.getComposer(c)
                if str(p).endswith((".mxl", ".xml", ".krn"))]
    madrigals = [p for p in corpus.getComposer("monteverdi") if str(p).endswith((".mxl", ".xml", ".krn"))]
    groups, per_group = (sorted(quartets), sorted(madrigals)), pieces // 2
    if kind == "madrigals":
        groups, per_group = (sorted(madrigals),), pieces
    if kind == "palestrina":
        groups, per_group = (sorted(map(str, corpus.getComposer("palestrina")))[::20],), pieces
    written: list[Path] = []
    for group in groups:
        count = 0
        for path in group:
            if count >= per_group:
                break
            target = out / f"{Path(path).parent.name}-{Path(path).stem}.mid"
            if target in written:  # the same piece in two formats
                continue
            try:
                piece = read_music21(Path(path))[0]
            except MusicFileError:
                continue
            if len(piece.tracks) < 3:
                continue
            written.append(write_piece(piece, target))
            count += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--pieces", type=int, default=24)
    ap.add_argument("--kind", choices=KINDS, default="quartets")
    a = ap.parse_args()
    files = write_corpus(a.out, a.pieces, a.kind)
    print(f"wrote {len(files)} multitrack MIDI files to {a.out}")


if __name__ == "__main__":
    main()
