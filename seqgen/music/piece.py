"""A piece of music as numpy arrays, and its conversions to and from files.

``Piece`` holds notes (onset, duration, pitch, velocity, program; program 128 = drums),
tempo changes, time signatures and sustain-pedal spans, all timed in ticks at ``tpq`` ticks
per quarter note. MIDI goes through symusic (C++, about 0.1 ms a file); MusicXML, ABC and
kern through music21 (about 50 ms a score). Both are imported inside the functions, so this
module is as light as numpy.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from seqgen.errors import SeqgenError

DRUMS = 128  # program number used for percussion (MIDI channel 10)
TPQ = 480  # ticks per quarter of the pieces seqgen writes
MIDI_SUFFIXES = {".mid", ".midi"}
MUSIC21_SUFFIXES = {".xml", ".mxl", ".musicxml", ".abc", ".krn"}
DEFAULT_QPM = 120.0
DEFAULT_VELOCITY = 80
MAX_QUARTERS = 50_000  # about seven hours at 120 bpm: longer means corrupt times


class MusicFileError(SeqgenError):
    """A music file that cannot be read or holds no notes (the reason is the message)."""


@dataclass
class Piece:
    tpq: int
    time: np.ndarray  # (N,) int64 onset ticks
    duration: np.ndarray  # (N,) int64 ticks, >= 1
    pitch: np.ndarray  # (N,) int64 0..127
    velocity: np.ndarray  # (N,) int64 1..127
    program: np.ndarray  # (N,) int64 0..127, or DRUMS
    tempos: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # (K, 2) [tick, quarter notes per minute]
    time_sigs: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))  # (K, 3) [tick, num, den]
    pedals: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))  # (K, 2) [tick, duration]
    name: str = ""
    info: dict = field(default_factory=dict)

    @classmethod
    def from_notes(cls, notes, tpq: int = TPQ, **kw) -> "Piece":
        """From rows of (onset, duration, pitch[, velocity[, program]])."""
        a = np.asarray(notes, dtype=np.int64)
        a = a.reshape(len(a), -1) if a.size else np.zeros((0, 5), dtype=np.int64)
        n = len(a)

        def col(i: int, default: int) -> np.ndarray:
            return a[:, i] if a.shape[1] > i else np.full(n, default, dtype=np.int64)

        return cls(tpq, col(0, 0), np.maximum(col(1, 1), 1), col(2, 60), col(3, DEFAULT_VELOCITY), col(4, 0), **kw)

    def __len__(self) -> int:
        return int(len(self.time))

    @property
    def end(self) -> int:
        """The tick where the last note ends (0 when there is none)."""
        return int((self.time + self.duration).max()) if len(self) else 0

    def sorted(self) -> "Piece":
        order = np.lexsort((self.pitch, self.program, self.time))
        return self.select(order)

    def select(self, index) -> "Piece":
        """A piece with the notes at ``index`` (a mask or indices); the rest is kept."""
        return Piece(self.tpq, self.time[index], self.duration[index], self.pitch[index], self.velocity[index],
                     self.program[index], self.tempos, self.time_sigs, self.pedals, self.name, dict(self.info))

    def note_set(self, tpq: int | None = None) -> set[tuple[int, int, int, int]]:
        """{(onset, duration, pitch, program)} with times at ``tpq`` ticks per quarter (for comparisons)."""
        f = (tpq or self.tpq) / self.tpq
        t = np.rint(self.time * f).astype(np.int64)
        d = np.rint(self.duration * f).astype(np.int64)
        return set(zip(t.tolist(), d.tolist(), self.pitch.tolist(), self.program.tolist()))

    def qpm_at(self, tick: int = 0) -> float:
        if not len(self.tempos):
            return DEFAULT_QPM
        before = self.tempos[self.tempos[:, 0] <= tick]
        return float(before[-1, 1] if len(before) else self.tempos[0, 1])

    def seconds(self, tick: int | None = None) -> float:
        """Seconds from the start to ``tick`` (default: the end), following the tempo changes."""
        tick = self.end if tick is None else tick
        tempos = self.tempos[np.argsort(self.tempos[:, 0], kind="stable")] if len(self.tempos) else np.array([[0, DEFAULT_QPM]])
        total, last_t, qpm = 0.0, 0.0, float(tempos[0, 1])
        for t, q in tempos:
            if t >= tick:
                break
            total += (t - last_t) / self.tpq * 60.0 / qpm
            last_t, qpm = float(t), float(q)
        return total + (tick - last_t) / self.tpq * 60.0 / qpm

    def with_tempo(self, qpm: float) -> "Piece":
        p = self.select(slice(None))
        p.tempos = np.array([[0.0, float(qpm)]])
        return p


# ---- MIDI (symusic) ----------------------------------------------------------------------
def from_symusic(score, name: str = "") -> Piece:
    parts = []
    for track in score.tracks:
        if not len(track.notes):
            continue
        a = track.notes.numpy()
        prog = DRUMS if track.is_drum else int(track.program)
        parts.append((a["time"], a["duration"], a["pitch"], a["velocity"], np.full(len(a["time"]), prog)))
    if parts:
        t, d, p, v, g = (np.concatenate([np.asarray(x[i], dtype=np.int64) for x in parts]) for i in range(5))
    else:
        t = d = p = v = g = np.zeros(0, dtype=np.int64)
    keep = (p >= 0) & (p <= 127) & (t >= 0)
    tempos = np.array([[tp.time, tp.qpm] for tp in score.tempos], dtype=np.float64).reshape(-1, 2)
    sigs = np.array([[ts.time, ts.numerator, ts.denominator] for ts in score.time_signatures],
                    dtype=np.int64).reshape(-1, 3)
    pedals = [[pd.time, pd.duration] for tr in score.tracks if not tr.is_drum for pd in tr.pedals]
    piece = Piece(int(score.ticks_per_quarter), t[keep], np.maximum(d[keep], 1), p[keep],
                  np.clip(v[keep], 1, 127), g[keep], tempos, sigs,
                  np.array(pedals, dtype=np.int64).reshape(-1, 2), name)
    return piece.sorted()


def read_midi(source: Path | bytes, name: str = "") -> Piece:
    """A MIDI file (path or bytes) as a Piece. Raises MusicFileError saying why it cannot."""
    import symusic

    try:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
    except OSError as e:
        raise MusicFileError(f"cannot read it ({e.strerror})") from None
    if len(data) < 14 or data[:4] != b"MThd":
        raise MusicFileError("not a MIDI file (no MThd header)" if data else "empty file")
    try:
        score = symusic.Score.from_midi(data)
    except Exception as e:  # symusic raises RuntimeError with its parser's message
        raise MusicFileError(f"corrupt MIDI ({_first_line(e)})") from None
    if score.ticks_per_quarter <= 0:
        raise MusicFileError(f"corrupt MIDI (ticks per quarter note {score.ticks_per_quarter})")
    piece = from_symusic(score, name or (Path(source).stem if not isinstance(source, bytes) else ""))
    if not len(piece):
        raise MusicFileError("no notes")
    if piece.end > MAX_QUARTERS * piece.tpq:
        raise MusicFileError(f"implausibly long ({piece.end / piece.tpq:,.0f} quarter notes; corrupt times?)")
    return piece


def voice_layers(piece: Piece) -> np.ndarray:
    """(N,) layer of each note so that equal notes (pitch, program) never overlap within a layer:
    0 for almost all; unisons of two voices that overlap go to layer 1, 2..."""
    layer = np.zeros(len(piece), dtype=np.int64)
    order = np.lexsort((piece.time, piece.pitch, piece.program))
    t, e = piece.time[order], (piece.time + piece.duration)[order]
    same = (piece.pitch[order][1:] == piece.pitch[order][:-1]) & (piece.program[order][1:] == piece.program[order][:-1])
    if not (same & (t[1:] < e[:-1])).any():
        return layer
    ends: dict[tuple[int, int], list[int]] = {}  # (pitch, program) -> end tick per layer
    for i in order.tolist():
        key = (int(piece.pitch[i]), int(piece.program[i]))
        lanes = ends.setdefault(key, [])
        k = next((j for j, end in enumerate(lanes) if end <= piece.time[i]), len(lanes))
        if k == len(lanes):
            lanes.append(0)
        lanes[k] = int(piece.time[i] + piece.duration[i])
        layer[i] = k
    return layer


def to_symusic(piece: Piece):
    """A symusic Score: one track per program (and per unison layer), pedals on the first track."""
    import symusic

    score = symusic.Score(piece.tpq)
    layers = voice_layers(piece)
    first = True
    for prog, layer in sorted(set(zip(piece.program.tolist(), layers.tolist()))):
        m = (piece.program == prog) & (layers == layer)
        track = symusic.Track(name="Drums" if prog == DRUMS else f"Program {prog}" + (f" ({layer + 1})" if layer else ""),
                              program=0 if prog == DRUMS else int(prog), is_drum=prog == DRUMS)
        track.notes = symusic.Note.from_numpy(
            piece.time[m].astype(np.int32), piece.duration[m].astype(np.int32),
            piece.pitch[m].astype(np.int8), piece.velocity[m].astype(np.int8))
        if first and prog != DRUMS:
            for t, d in piece.pedals.tolist():
                track.pedals.append(symusic.Pedal(int(t), int(d)))
            first = False
        score.tracks.append(track)
    for t, q in (piece.tempos.tolist() if len(piece.tempos) else [[0, DEFAULT_QPM]]):
        score.tempos.append(symusic.Tempo(int(t), float(q)))
    for t, n, d in piece.time_sigs.tolist():
        score.time_signatures.append(symusic.TimeSignature(int(t), int(n), int(d)))
    return score


# ---- music21 (MusicXML, ABC, kern, and music21's own corpus) --------------------------------
def from_music21(score, name: str = "", tpq: int = TPQ) -> Piece:
    """Notes of a music21 Score (or Part); ties are merged; a pickup bar is padded to a full bar."""
    from music21 import meter, stream, tempo

    parts = list(score.parts) if isinstance(score, stream.Score) and score.parts else [score]
    shift = 0.0
    measures = parts[0].getElementsByClass(stream.Measure)
    if measures:
        first = measures[0]
        shift = float(first.paddingLeft or 0.0)
    rows: list[tuple] = []
    for part in parts:
        inst = part.getInstrument(returnDefault=True)
        drums = inst is not None and (getattr(inst, "midiChannel", None) == 9 or "Percussion" in inst.classes)
        prog = DRUMS if drums else int(getattr(inst, "midiProgram", None) or 0)
        open_ties: dict[int, list] = {}
        for n in part.flatten().notes:
            off = float(n.offset) + shift
            dur = float(n.duration.quarterLength)
            vel = n.volume.velocity if n.volume.velocity is not None else DEFAULT_VELOCITY
            pitches = [p.midi for p in n.pitches] if hasattr(n, "pitches") else []
            tie = n.tie.type if n.tie is not None else None
            for midi in pitches:
                held = open_ties.get(midi)
                if tie in ("stop", "continue") and held is not None:
                    held[1] = off + dur - held[0]
                    if tie == "stop":
                        del open_ties[midi]
                    continue
                row = [off, dur, midi, int(vel), prog]
                rows.append(row)
                if tie in ("start", "continue"):
                    open_ties[midi] = row
    flat = score.flatten() if hasattr(score, "flatten") else score
    q = lambda x: int(round(float(x) * tpq))  # noqa: E731
    tempos = [[q(float(m.offset) + shift if m.offset else 0), m.getQuarterBPM()]
              for m in flat.getElementsByClass(tempo.MetronomeMark) if m.getQuarterBPM()]
    sigs, seen = [], set()
    for ts in flat.getElementsByClass(meter.TimeSignature):
        t = q(float(ts.offset) + shift if ts.offset else 0)
        if t not in seen:
            seen.add(t)
            sigs.append([t, ts.numerator, ts.denominator])
    if rows:
        a = np.array(rows, dtype=np.float64)
        t, d = np.rint(a[:, 0] * tpq).astype(np.int64), np.rint(a[:, 1] * tpq).astype(np.int64)
        keep = (d > 0) & (a[:, 2] >= 0) & (a[:, 2] <= 127)  # grace notes (no duration) are left out
        a, t, d = a[keep], t[keep], d[keep]
        piece = Piece(tpq, t, d, a[:, 2].astype(np.int64), np.clip(a[:, 3], 1, 127).astype(np.int64),
                      a[:, 4].astype(np.int64), np.array(tempos, dtype=np.float64).reshape(-1, 2),
                      np.array(sigs, dtype=np.int64).reshape(-1, 3), name=name)
    else:
        piece = Piece.from_notes([], tpq, name=name)
    return piece.sorted()


def read_music21(path: Path) -> list[Piece]:
    """The pieces of a MusicXML/ABC/kern file (an ABC file may hold many tunes)."""
    from music21 import converter, stream

    path = Path(path)
    try:
        with quiet_music21():
            parsed = converter.parse(str(path), forceSource=True)
    except Exception as e:  # music21 raises many kinds of errors on malformed input
        raise MusicFileError(f"music21 cannot parse it ({type(e).__name__}: {_first_line(e)})") from None
    scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    pieces = []
    for i, s in enumerate(scores):
        try:
            p = from_music21(s, name=f"{path.stem}#{i + 1}" if len(scores) > 1 else path.stem)
        except Exception as e:
            raise MusicFileError(f"cannot read its notes ({type(e).__name__}: {_first_line(e)})") from None
        if len(p):
            pieces.append(p)
    if not pieces:
        raise MusicFileError("no notes")
    return pieces


def read_any(path: Path) -> list[Piece]:
    """Pieces of any supported music file, by its suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in MIDI_SUFFIXES:
        return [read_midi(path)]
    if suffix in MUSIC21_SUFFIXES:
        return read_music21(path)
    raise MusicFileError(f"unknown music file type {suffix!r}; expected one of "
                         f"{', '.join(sorted(MIDI_SUFFIXES | MUSIC21_SUFFIXES))}")


def to_music21(piece: Piece):
    """A music21 Score with one part per program; simultaneous notes become chords."""
    from music21 import chord, instrument, meter, note, stream, tempo

    score = stream.Score()
    f = Fraction(1, piece.tpq)
    qpm = piece.qpm_at(0)
    for prog in sorted(set(piece.program.tolist())) or [0]:
        part = stream.Part()
        if prog == DRUMS:
            part.insert(0, instrument.Percussion())
        else:
            inst = instrument.instrumentFromMidiProgram(int(prog))
            part.insert(0, inst)
        if len(piece.time_sigs):
            _, n, d = piece.time_sigs[0].tolist()
            part.insert(0, meter.TimeSignature(f"{n}/{d}"))
        m = piece.program == prog
        groups: dict[tuple[int, int], list[int]] = {}
        for t, d, p in zip(piece.time[m].tolist(), piece.duration[m].tolist(), piece.pitch[m].tolist()):
            groups.setdefault((t, d), []).append(p)
        for (t, d), pitches in sorted(groups.items()):
            el = note.Note(pitches[0]) if len(pitches) == 1 else chord.Chord(sorted(set(pitches)))
            el.duration.quarterLength = Fraction(d) * f
            part.insert(Fraction(t) * f, el)
        score.insert(0, part.chordify() if len(groups) else part)
    score.parts[0].insert(0, tempo.MetronomeMark(number=round(qpm)))
    return score


# ---- writing -----------------------------------------------------------------------------
def write_piece(piece: Piece, path: Path) -> Path:
    """Write a .mid/.midi (symusic) or .musicxml/.xml/.mxl (music21) file atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MIDI_SUFFIXES | {".musicxml", ".xml", ".mxl"}:
        raise SeqgenError(f"cannot write {path.name}: expected a .mid, .midi, .musicxml, .xml or .mxl file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{suffix}")
    try:
        if suffix in MIDI_SUFFIXES:
            tmp.write_bytes(to_symusic(piece).dumps_midi())
        else:
            fmt = "mxl" if suffix == ".mxl" else "musicxml"
            with quiet_music21():
                written = Path(to_music21(piece).write(fmt, fp=str(tmp)))
            if written != tmp:
                os.replace(written, tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise SeqgenError(f"cannot write {path}: {e.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def quiet_music21():
    """music21 writes its warnings (odd beams, unknown ABC symbols) straight to stderr; mute them."""
    return contextlib.redirect_stderr(io.StringIO())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]
