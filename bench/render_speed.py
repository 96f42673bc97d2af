"""How fast audio renders: a Bach chorale of music21's corpus (default bwv10.7, 23 bars; its first
16 bars by --bars) through TinySoundFont and a SoundFont, written as a WAV.

    python bench/render_speed.py [--chorale bwv66.6] [--bars 16] [--soundfont FILE.sf2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chorale", default="bwv10.7")
    ap.add_argument("--bars", type=int, default=16)
    ap.add_argument("--soundfont", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from music21 import corpus

    from seqgen.compose import _first_bars
    from seqgen.music.audio import find_soundfont, render_wav
    from seqgen.music.files import from_music21

    font = find_soundfont(args.soundfont)
    piece = _first_bars(from_music21(corpus.parse(args.chorale), name=args.chorale), args.bars)
    out = Path(tempfile.mkdtemp(prefix="seqgen-render-")) / "out.wav"
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        render_wav(piece, out, font)
        times.append(time.perf_counter() - start)
    print(f"{args.chorale}, {args.bars} bars ({len(piece)} notes, {piece.seconds():.1f} s of music) with {font.name}: "
          f"render and write {statistics.median(times):.3f} s (median of {args.repeat}); {out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
