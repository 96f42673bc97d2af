"""Music files to and from ``Piece``: MIDI through symusic (C++, about 0.1 ms a file); MusicXML,
ABC and kern through music21 (about 50 ms a score). Both are imported inside the functions."""

from __future__ import annotations

import contextlib
import io
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from seqgen.errors import MusicFileError, SeqgenError
from seqgen.fileio import atomic_path
from seqgen.music.piece import (DEFAULT_QPM, DEFAULT_VELOCITY, DRUMS, MAX_QUARTERS, MIDI_SUFFIXES, MUSIC21_SUFFIXES,
                                TPQ, Piece, Track, program_name, voice_layers)

KEY_MODES = ("major", "minor")


# ---- MIDI (symusic) ----------------------------------------------------------------------
def from_symusic(score, name: str = "") -> Piece:
    """Each MIDI track with notes becomes a track of the piece (its name, program, drum flag)."""
    parts, tracks = [], []
    for track in score.tracks:
        if not len(track.notes):
            continue
        a = track.notes.numpy()
        prog = DRUMS if track.is_drum else int(track.program)
        parts.append((a["time"], a["duration"], a["pitch"], a["velocity"], np.full(len(a["time"]), prog),
                      np.full(len(a["time"]), len(tracks))))
        tracks.append(Track(str(track.name).strip() or program_name(prog), prog, bool(track.is_drum)))
    if parts:
        t, d, p, v, g, k = (np.concatenate([np.asarray(x[i], dtype=np.int64) for x in parts]) for i in range(6))
    else:
        t = d = p = v = g = k = np.zeros(0, dtype=np.int64)
    keep = (p >= 0) & (p <= 127) & (t >= 0)
    tempos = np.array([[tp.time, tp.qpm] for tp in score.tempos], dtype=np.float64).reshape(-1, 2)
    sigs = np.array([[ts.time, ts.numerator, ts.denominator] for ts in score.time_signatures],
                    dtype=np.int64).reshape(-1, 3)
    pedals = [[pd.time, pd.duration] for tr in score.tracks if not tr.is_drum for pd in tr.pedals]
    piece = Piece(int(score.ticks_per_quarter), t[keep], np.maximum(d[keep], 1), p[keep],
                  np.clip(v[keep], 1, 127), g[keep], tempos, sigs,
                  np.array(pedals, dtype=np.int64).reshape(-1, 2), name, {}, k[keep], tracks)
    if tracks:
        piece = _drop_empty_tracks(piece)
    keys = [(ks.key, ks.tonality) for ks in getattr(score, "key_signatures", [])]
    if keys and -7 <= keys[0][0] <= 7:
        piece.info["key"] = _key_from_signature(int(keys[0][0]), int(keys[0][1]))
    return piece.sorted()


def _key_from_signature(sharps: int, minor: int) -> str:
    names = ("C", "G", "D", "A", "E", "B", "F#", "C#", "Cb", "Gb", "Db", "Ab", "Eb", "Bb", "F")
    majors = {i: names[i] for i in range(8)} | {-i: names[15 - i] for i in range(1, 8)}
    tonic_pc = (7 * sharps + (9 if minor else 0)) % 12
    pcs = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
    return f"{pcs[tonic_pc] if minor else majors[sharps]} {'minor' if minor else 'major'}"


def _drop_empty_tracks(piece: Piece) -> Piece:
    used = sorted(set(piece.track.tolist()))
    return piece.only_tracks(used) if len(used) < len(piece.tracks) else piece


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


def to_symusic(piece: Piece):
    """A symusic Score: one MIDI track per track of the piece (and per unison layer within one),
    named as the piece's tracks are; pedals on the first track."""
    import symusic

    score = symusic.Score(piece.tpq)
    layers = voice_layers(piece)
    first = True
    for k, layer in sorted(set(zip(piece.track.tolist(), layers.tolist()))):
        m = (piece.track == k) & (layers == layer)
        info = piece.tracks[k]
        prog = DRUMS if info.drum else int(info.program)
        track = symusic.Track(name=info.name + (f" ({layer + 1})" if layer else ""),
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
    tracks: list[Track] = []
    for part in parts:
        inst = part.getInstrument(returnDefault=True)
        drums = inst is not None and (getattr(inst, "midiChannel", None) == 9 or "Percussion" in inst.classes)
        prog = DRUMS if drums else int(getattr(inst, "midiProgram", None) or 0)
        k = len(tracks)
        label = (getattr(part, "partName", None) or (inst.partName if inst is not None else None)
                 or (inst.instrumentName if inst is not None else None) or f"Part {k + 1}")
        tracks.append(Track(str(label).strip(), prog, drums))
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
                row = [off, dur, midi, int(vel), prog, k]
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
                      np.array(sigs, dtype=np.int64).reshape(-1, 3), name=name, track=a[:, 5].astype(np.int64),
                      tracks=tracks)
        piece = _drop_empty_tracks(piece)
    else:
        piece = Piece.from_notes([], tpq, name=name)
    said = _music21_key(flat)
    if said:
        piece.info["key"] = said
    return piece.sorted()


def _music21_key(flat) -> str | None:
    """The key a score states (a Key with its mode; a bare key signature is read as major
    unless the piece ends on the relative minor's tonic, which this does not check: None)."""
    from music21 import key

    for k in flat.getElementsByClass(key.Key):
        if k.mode in KEY_MODES:
            return f"{k.tonic.name.replace('-', 'b')} {k.mode}"
    return None


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
    """A music21 Score with one part per track, named as the track is; simultaneous notes of a
    track become chords."""
    from music21 import chord, instrument, meter, note, stream, tempo

    score = stream.Score()
    f = Fraction(1, piece.tpq)
    qpm = piece.qpm_at(0)
    for k in sorted(set(piece.track.tolist())) or [0]:
        info = piece.tracks[k] if piece.tracks else Track("Part 1", 0)
        prog = DRUMS if info.drum else info.program
        part = stream.Part()
        part.partName = info.name
        if prog == DRUMS:
            part.insert(0, instrument.Percussion())
        else:
            inst = instrument.instrumentFromMidiProgram(int(prog))
            part.insert(0, inst)
        if len(piece.time_sigs):
            _, n, d = piece.time_sigs[0].tolist()
            part.insert(0, meter.TimeSignature(f"{n}/{d}"))
        m = piece.track == k
        groups: dict[tuple[int, int], list[int]] = {}
        for t, d, p in zip(piece.time[m].tolist(), piece.duration[m].tolist(), piece.pitch[m].tolist()):
            groups.setdefault((t, d), []).append(p)
        for (t, d), pitches in sorted(groups.items()):
            el = note.Note(pitches[0]) if len(pitches) == 1 else chord.Chord(sorted(set(pitches)))
            el.duration.quarterLength = Fraction(d) * f
            part.insert(Fraction(t) * f, el)
        written = part.chordify() if len(groups) else part
        written.partName = info.name
        score.insert(0, written)
    score.parts[0].insert(0, tempo.MetronomeMark(number=round(qpm)))
    return score


# ---- writing -----------------------------------------------------------------------------
def write_piece(piece: Piece, path: Path) -> Path:
    """Write a .mid/.midi (symusic) or .musicxml/.xml/.mxl (music21) file atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MIDI_SUFFIXES | {".musicxml", ".xml", ".mxl"}:
        raise SeqgenError(f"cannot write {path.name}: expected a .mid, .midi, .musicxml, .xml or .mxl file name")
    with atomic_path(path) as tmp:
        if suffix in MIDI_SUFFIXES:
            tmp.write_bytes(to_symusic(piece).dumps_midi())
        else:
            work = tmp.with_name(tmp.name + suffix)  # music21 picks the format by the suffix
            try:
                with quiet_music21():
                    written = Path(to_music21(piece).write("mxl" if suffix == ".mxl" else "musicxml", fp=str(work)))
                os.replace(written, tmp)
            finally:
                work.unlink(missing_ok=True)
    return path


def quiet_music21():
    """music21 writes its warnings (odd beams, unknown ABC symbols) straight to stderr; mute them."""
    return contextlib.redirect_stderr(io.StringIO())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:160]
