"""The measures papers report for generated symbolic music, written from MusPy's definitions
(Dong et al., ISMIR 2020 late-breaking demo; ``muspy.metrics``), on a grid of ``STEPS`` time steps
per quarter note (MusPy's default resolution, 24), and the overlap area of two sets' distributions
of each measure taken bar by bar (Yang & Lerch 2020, "On the evaluation of generative models in
music": densities smoothed with a Gaussian kernel, the area under the smaller of the two).

Written here rather than imported: MusPy brings requests, pypianoroll and pretty-midi with it
(and mgeval is Python 2), while each measure is a few lines of numpy. Drums are left out of every
pitch measure; ``empty_beat_rate`` counts them, as MusPy does.

- pitch_range: highest minus lowest pitch (semitones);
- pitch_class_entropy: Shannon entropy (bits) of the notes' pitch-class histogram, 0..log2(12);
- scale_consistency: the largest share of notes inside one major or minor scale, over all 24;
- groove_consistency: 1 - the mean Hamming distance between the onset vectors of neighbouring
  bars, divided by the steps per bar;
- empty_beat_rate: share of beats (quarter notes) in which no note sounds;
- polyphony: mean number of pitches sounding at the steps where at least one sounds;
- polyphony_rate: share of steps where more than two pitches sound (MusPy's code: threshold 2,
  compared strictly, though its docstring says "multiple pitches").

Checked against MusPy 0.5.0 on the MIDI files in ../shared/music and five chorales
(tests/test_metrics.py, when MusPy is installed): equal on all but two measures, where the
edges differ on purpose: MusPy's empty-beat rate and groove consistency count one beat (bar)
past the end, and a note ending on a beat line fills the next beat; here only the beats and
whole bars the piece covers count (differences up to 0.013 and 0.003 on those files).
"""

from __future__ import annotations

import numpy as np

from seqgen.music.piece import DRUMS, Piece

STEPS = 24  # time steps per quarter note (MusPy's default resolution)
MEASURES = ("pitch_range", "pitch_class_entropy", "scale_consistency", "groove_consistency", "empty_beat_rate",
            "polyphony", "polyphony_rate")
_MAJOR = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)  # C major; its rotations hold every minor scale too


def _pitched(piece: Piece):
    m = piece.program != DRUMS
    return piece.time[m], piece.duration[m], piece.pitch[m]


def _steps(piece: Piece, ticks) -> np.ndarray:
    return np.rint(np.asarray(ticks, dtype=np.float64) * STEPS / piece.tpq).astype(np.int64)


def pitch_range(piece: Piece) -> float:
    _, _, p = _pitched(piece)
    return float(p.max() - p.min()) if len(p) else 0.0


def pitch_class_entropy(piece: Piece) -> float:
    _, _, p = _pitched(piece)
    if not len(p):
        return 0.0
    h = np.bincount(p % 12, minlength=12) / len(p)
    h = h[h > 0]
    return float(-(h * np.log2(h)).sum())


def scale_consistency(piece: Piece) -> float:
    _, _, p = _pitched(piece)
    if not len(p):
        return 0.0
    counts = np.bincount(p % 12, minlength=12)
    return float(max(counts[np.roll(_MAJOR, root)].sum() for root in range(12)) / len(p))


def _roll(piece: Piece, start: int = 0, end: int | None = None) -> np.ndarray:
    """(steps, 128) pitches sounding at each step from tick ``start`` to ``end`` (default: the end)."""
    t, d, p = _pitched(piece)
    a = _steps(piece, start)
    b = _steps(piece, piece.end if end is None else end)
    roll = np.zeros((max(0, b - a), 128), dtype=bool)
    for s, e, q in zip(_steps(piece, t).tolist(), _steps(piece, t + d).tolist(), p.tolist()):
        roll[max(s, a) - a : max(min(e, b), a) - a, q] = True
    return roll


def polyphony(piece: Piece) -> float:
    n = _roll(piece).sum(axis=1)
    return float(n[n > 0].mean()) if (n > 0).any() else 0.0


def polyphony_rate(piece: Piece, threshold: int = 2) -> float:
    n = _roll(piece).sum(axis=1)
    return float((n > threshold).mean()) if len(n) else 0.0


def empty_beat_rate(piece: Piece, start: int = 0, end: int | None = None) -> float:
    end = piece.end if end is None else end
    beats = int(np.ceil((end - start) / piece.tpq))
    if beats <= 0:
        return 0.0
    full = np.zeros(beats, dtype=bool)
    for s, e in zip((piece.time - start).tolist(), (piece.time + piece.duration - start).tolist()):
        lo, hi = max(s, 0) // piece.tpq, (min(e, end - start) - 1) // piece.tpq
        if hi >= lo:
            full[lo : hi + 1] = True
    return float(1 - full.mean())


def bar_spans(piece: Piece) -> list[tuple[int, int]]:
    """(start, end) ticks of each bar: the bar lines a decoded piece records, else the first meter's."""
    end = max(piece.end, 1)
    starts = [int(s) for s in piece.info.get("bar_starts", [])]
    if not starts:
        n, d = piece.time_sigs[0, 1:].tolist() if len(piece.time_sigs) else (4, 4)
        length = max(1, n * 4 * piece.tpq // d)
        starts = list(range(0, end, length))
    bounds = starts + [max(end, starts[-1] + 1)]
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def _onsets(piece: Piece, start: int, end: int) -> np.ndarray:
    v = np.zeros(max(1, _steps(piece, end) - _steps(piece, start)), dtype=bool)
    t = piece.time[(piece.time >= start) & (piece.time < end)]
    v[np.minimum(_steps(piece, t) - _steps(piece, start), len(v) - 1)] = True
    return v


def groove_pairs(piece: Piece) -> list[float]:
    """1 - Hamming distance / steps per bar, for each pair of neighbouring bars of equal length."""
    spans = bar_spans(piece)
    vectors = [_onsets(piece, a, b) for a, b in spans]
    return [float(1 - np.count_nonzero(u != v) / len(u)) for u, v in zip(vectors[:-1], vectors[1:]) if len(u) == len(v)]


def groove_consistency(piece: Piece) -> float:
    pairs = groove_pairs(piece)
    return float(np.mean(pairs)) if pairs else 1.0


def measures(piece: Piece) -> dict[str, float]:
    """Every measure of one piece."""
    return {"pitch_range": pitch_range(piece), "pitch_class_entropy": pitch_class_entropy(piece),
            "scale_consistency": scale_consistency(piece), "groove_consistency": groove_consistency(piece),
            "empty_beat_rate": empty_beat_rate(piece), "polyphony": polyphony(piece),
            "polyphony_rate": polyphony_rate(piece)}


def bar_piece(piece: Piece, start: int, end: int) -> Piece:
    """The notes that start in [start, end), moved to start at 0 and cut at the bar's end."""
    out = piece.select((piece.time >= start) & (piece.time < end))
    out.time = out.time - start
    out.duration = np.minimum(out.duration, end - start - out.time)
    out.info = {}
    return out


def per_bar(piece: Piece) -> dict[str, list[float]]:
    """Each measure bar by bar (groove consistency: per pair of neighbouring bars); bars with no
    pitched note are left out of the pitch measures, as they have none."""
    rows: dict[str, list[float]] = {k: [] for k in MEASURES}
    for a, b in bar_spans(piece):
        bar = bar_piece(piece, a, b)
        rows["empty_beat_rate"].append(empty_beat_rate(bar, 0, b - a))
        if not (bar.program != DRUMS).any():
            continue
        for name, f in (("pitch_range", pitch_range), ("pitch_class_entropy", pitch_class_entropy),
                        ("scale_consistency", scale_consistency)):
            rows[name].append(f(bar))
        n = _roll(bar, 0, b - a).sum(axis=1)
        rows["polyphony"].append(float(n[n > 0].mean()) if (n > 0).any() else 0.0)
        rows["polyphony_rate"].append(float((n > 2).mean()) if len(n) else 0.0)
    rows["groove_consistency"] = groove_pairs(piece)
    return rows


def overlap_area(a, b, grid: int = 1024) -> float | None:
    """Area under min(p, q) of the Gaussian kernel densities of samples ``a`` and ``b`` (Silverman's
    bandwidth, at least 5% of the values' spread): 1 for the same distribution, 0 for disjoint ones;
    None when a side has no value."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not len(a) or not len(b):
        return None
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    if hi - lo < 1e-12:
        return 1.0
    floor = 0.05 * (hi - lo)

    def width(x):
        return max(1.06 * float(x.std()) * len(x) ** -0.2, floor)

    wa, wb = width(a), width(b)
    xs = np.linspace(lo - 4 * max(wa, wb), hi + 4 * max(wa, wb), grid)

    def density(x, w):
        z = (xs[:, None] - x[None, :]) / w
        return np.exp(-0.5 * z * z).sum(axis=1) / (len(x) * w * np.sqrt(2 * np.pi))

    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it
    return float(np.clip(trapezoid(np.minimum(density(a, wa), density(b, wb)), xs), 0.0, 1.0))


def compare_sets(generated: list[Piece], reference: list[Piece]) -> dict:
    """For ``seqgen eval``: the mean of each measure over each set, and the overlap area of the two
    sets' distributions of it taken bar by bar."""
    def means(pieces):
        rows = [measures(p) for p in pieces]
        return {k: (round(float(np.mean([r[k] for r in rows])), 4) if rows else None) for k in MEASURES}

    def bars(pieces):
        out: dict[str, list[float]] = {k: [] for k in MEASURES}
        for p in pieces:
            for k, v in per_bar(p).items():
                out[k] += v
        return out

    gb, rb = bars(generated), bars(reference)
    overlap = {k: overlap_area(gb[k], rb[k]) for k in MEASURES}
    return {"generated": means(generated), "held_out": means(reference),
            "overlap_per_bar": {k: (None if v is None else round(v, 4)) for k, v in overlap.items()}}
