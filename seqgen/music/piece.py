"""A piece of music as numpy arrays, and its conversions to and from files.

``Piece`` holds notes (onset, duration, pitch, velocity, program; program 128 = drums; the
track each belongs to), the tracks (name, program, drum flag), tempo changes, time signatures
and sustain-pedal spans, all timed in ticks at ``tpq`` ticks
per quarter note. Reading and writing files is ``seqgen.music.files``'s; this module needs numpy alone, so the
MIDI tokenizer (and the onnxruntime engine through it) never reaches symusic or music21.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


DRUMS = 128  # program number used for percussion (MIDI channel 10)
TPQ = 480  # ticks per quarter of the pieces seqgen writes
MIDI_SUFFIXES = {".mid", ".midi"}
MUSIC21_SUFFIXES = {".xml", ".mxl", ".musicxml", ".abc", ".krn"}
DEFAULT_QPM = 120.0
DEFAULT_VELOCITY = 80
MAX_QUARTERS = 50_000  # about seven hours at 120 bpm: longer means corrupt times


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
    track: np.ndarray | None = None  # (N,) int64 index into ``tracks``; None: one track per program
    tracks: list = field(default_factory=list)  # [Track]: a name, a program and a drum flag each

    def __post_init__(self) -> None:
        if self.track is None or not self.tracks:
            self.track, self.tracks = tracks_by_program(np.asarray(self.program, dtype=np.int64))
        self.track = np.asarray(self.track, dtype=np.int64)

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
        order = np.lexsort((self.pitch, self.track, self.time))
        return self.select(order)

    def select(self, index) -> "Piece":
        """A piece with the notes at ``index`` (a mask or indices); the rest (tracks included) is kept."""
        return Piece(self.tpq, self.time[index], self.duration[index], self.pitch[index], self.velocity[index],
                     self.program[index], self.tempos, self.time_sigs, self.pedals, self.name, dict(self.info),
                     self.track[index], list(self.tracks))

    def only_tracks(self, keep) -> "Piece":
        """The notes of the tracks ``keep`` (indices), those tracks renumbered 0.. in the order given."""
        keep = [int(k) for k in keep]
        new_index = np.full(max(len(self.tracks), 1), -1, dtype=np.int64)
        new_index[keep] = np.arange(len(keep))
        m = np.isin(self.track, keep)
        p = self.select(m)
        p.track = new_index[p.track]
        p.tracks = [self.tracks[k] for k in keep]
        return p

    def joined(self, other: "Piece") -> "Piece":
        """The notes of both (``other``'s at this piece's tpq, its tracks appended after these);
        tempo, meter and pedals are this piece's."""
        f = self.tpq / other.tpq
        out = self.select(slice(None))
        out.time = np.concatenate((self.time, np.rint(other.time * f).astype(np.int64)))
        out.duration = np.concatenate((self.duration, np.maximum(np.rint(other.duration * f).astype(np.int64), 1)))
        for name in ("pitch", "velocity", "program"):
            setattr(out, name, np.concatenate((getattr(self, name), getattr(other, name))))
        out.track = np.concatenate((self.track, other.track + len(self.tracks)))
        out.tracks = list(self.tracks) + list(other.tracks)
        return out.sorted()

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
        tempos = (
            self.tempos[np.argsort(self.tempos[:, 0], kind="stable")]
            if len(self.tempos)
            else np.array([[0, DEFAULT_QPM]])
        )
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


@dataclass(frozen=True)
class Track:
    name: str
    program: int  # 0..127, or DRUMS
    drum: bool = False

    def to_dict(self) -> dict:
        return {"name": self.name, "program": self.program, "drum": self.drum}


def program_name(program: int) -> str:
    return "Drums" if program == DRUMS else f"Program {program}"


def tracks_by_program(program: np.ndarray) -> tuple[np.ndarray, list[Track]]:
    """One track per program (in program order): the tracks of a piece that says nothing else."""
    progs = sorted(set(program.tolist()))
    index = {p: i for i, p in enumerate(progs)}
    track = np.array([index[p] for p in program.tolist()], dtype=np.int64)
    return track, [Track(program_name(p), int(p), p == DRUMS) for p in progs]


def voice_layers(piece: Piece) -> np.ndarray:
    """(N,) layer of each note so that equal notes (pitch, track) never overlap within a layer:
    0 for almost all; unisons within a track that overlap go to layer 1, 2..."""
    layer = np.zeros(len(piece), dtype=np.int64)
    order = np.lexsort((piece.time, piece.pitch, piece.track))
    t, e = piece.time[order], (piece.time + piece.duration)[order]
    same = (piece.pitch[order][1:] == piece.pitch[order][:-1]) & (piece.track[order][1:] == piece.track[order][:-1])
    if not (same & (t[1:] < e[:-1])).any():
        return layer
    ends: dict[tuple[int, int], list[int]] = {}  # (pitch, track) -> end tick per layer
    for i in order.tolist():
        key = (int(piece.pitch[i]), int(piece.track[i]))
        lanes = ends.setdefault(key, [])
        k = next((j for j, end in enumerate(lanes) if end <= piece.time[i]), len(lanes))
        if k == len(lanes):
            lanes.append(0)
        lanes[k] = int(piece.time[i] + piece.duration[i])
        layer[i] = k
    return layer
