"""Statistics of pieces, and how far compositions are from real music.

Per piece: a duration-weighted pitch-class histogram rotated to the estimated key (so pieces in
different keys compare), the share of sounding time in that key's scale, polyphony (notes
sounding at once, while any sounds), note density (onsets per quarter note) and pitch spread.
``compare`` turns the features of two sets into distances in [0, 1] and their mean; silence is
1 on every count and one repeated note is far on all but the in-key ratio.
"""

from __future__ import annotations

import math

import numpy as np

from seqgen.music.piece import DRUMS, Piece

# Krumhansl & Kessler (1982) key profiles, tonic first
MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
FEATURES = ("in_key", "polyphony", "density", "pitch_std")


def pitch_name(midi: int) -> str:
    return f"{NAMES[midi % 12]}{midi // 12 - 1}"


def pc_histogram(piece: Piece) -> np.ndarray:
    """(12,) share of sounding time per pitch class (drums left out); zeros for silence."""
    m = piece.program != DRUMS
    h = np.bincount(piece.pitch[m] % 12, weights=piece.duration[m].astype(np.float64), minlength=12)
    return h / h.sum() if h.sum() > 0 else h


def estimate_key(piece: Piece) -> tuple[int, str, float]:
    """(tonic pitch class, "major"|"minor", correlation) by the Krumhansl-Schmuckler method."""
    h = pc_histogram(piece)
    if h.sum() == 0 or h.std() == 0:
        return 0, "major", 0.0
    best = (0, "major", -2.0)
    for mode, profile in (("major", MAJOR), ("minor", MINOR)):
        for tonic in range(12):
            r = float(np.corrcoef(h, np.roll(profile, tonic))[0, 1])
            if r > best[2]:
                best = (tonic, mode, r)
    return best


def key_name(piece: Piece) -> str:
    tonic, mode, r = estimate_key(piece)
    return "-" if r == 0.0 else f"{NAMES[tonic]} {mode}"


def polyphony(piece: Piece) -> tuple[float, float]:
    """(mean notes sounding while any sounds, share of the span that is silent)."""
    m = piece.program != DRUMS
    t, d = piece.time[m], piece.duration[m]
    if not len(t):
        return 0.0, 1.0
    times = np.concatenate((t, t + d))
    delta = np.concatenate((np.ones(len(t)), -np.ones(len(t))))
    order = np.lexsort((delta, times))  # ends before starts at the same tick
    times, delta = times[order], delta[order]
    count = np.cumsum(delta)[:-1]
    span = np.diff(times).astype(np.float64)
    sounding = span[count > 0].sum()
    total = float(times[-1] - times[0])
    return (float((count * span)[count > 0].sum() / sounding) if sounding else 0.0,
            float(1 - sounding / total) if total else 1.0)


def piece_stats(piece: Piece) -> dict:
    m = piece.program != DRUMS
    h = pc_histogram(piece)
    if not m.any():
        return {"notes": 0, "pc_key": np.zeros(12), "in_key": 0.0, "polyphony": 0.0, "silence": 1.0,
                "density": 0.0, "pitch_std": 0.0, "key": "-"}
    tonic, mode, _ = estimate_key(piece)
    root = tonic if mode == "major" else (tonic + 3) % 12  # minor keys share their relative major's scale
    pc_key = np.roll(h, -root)
    poly, silence = polyphony(piece)
    quarters = max(piece.end - int(piece.time.min()), piece.tpq) / piece.tpq
    return {"notes": int(m.sum()), "pc_key": pc_key, "in_key": float(pc_key[MAJOR_SCALE].sum()),
            "polyphony": poly, "silence": silence, "density": float(m.sum() / quarters),
            "pitch_std": float(piece.pitch[m].std()), "key": f"{NAMES[tonic]} {mode}"}


def summarize(stats: list[dict]) -> dict:
    """Mean features of a set of pieces (JSON-able)."""
    if not stats:
        return {"pieces": 0}
    out = {"pieces": len(stats), "notes": float(np.mean([s["notes"] for s in stats]))}
    for k in FEATURES + ("silence",):
        out[k] = float(np.mean([s[k] for s in stats]))
    out["pitch_class_histogram"] = [round(float(x), 4) for x in np.mean([s["pc_key"] for s in stats], axis=0)]
    return out


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b)) if max(abs(a), abs(b)) > 0 else 0.0


def compare(generated: list[dict], reference: list[dict]) -> dict:
    """Distances in [0, 1] of each generated piece from the reference set, averaged; and their mean.

    pitch_class: total variation between a piece's key-relative pitch-class histogram and the
    reference's mean one. Others: relative differences of the means (in_key: absolute)."""
    ref = summarize(reference)
    if not generated or not reference:
        return {"overall": 1.0}
    ref_h = np.array(ref["pitch_class_histogram"])
    rows = []
    for s in generated:
        if s["notes"] == 0:
            rows.append({"pitch_class": 1.0, "in_key": 1.0, "polyphony": 1.0, "density": 1.0, "pitch_std": 1.0})
            continue
        rows.append({"pitch_class": 0.5 * float(np.abs(s["pc_key"] - ref_h).sum()),
                     "in_key": abs(s["in_key"] - ref["in_key"]),
                     "polyphony": _rel(s["polyphony"], ref["polyphony"]),
                     "density": _rel(s["density"], ref["density"]),
                     "pitch_std": _rel(s["pitch_std"], ref["pitch_std"])})
    dist = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    dist["overall"] = float(np.mean(list(dist.values())))
    return dist


def seconds_text(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{int(seconds // 60)}:{int(math.floor(seconds % 60)):02d}"
