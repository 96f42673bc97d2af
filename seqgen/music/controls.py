"""What a composition may be asked for: key, meter, tempo band, instruments (or voices), note
density; their names, how to read them from text, and how to read them off a piece.

Numpy only (the MIDI tokenizer, and the onnxruntime engine through it, import this)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from seqgen.errors import ConfigError
from seqgen.music.piece import DRUMS, Piece, Track

PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_PC = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
MODES = ("major", "minor")
ROLES = ("soprano", "alto", "tenor", "bass", "melody")
TEMPO_EDGES = (60, 76, 92, 108, 126, 144, 168)  # quarter notes per minute: 8 bands
DENSITY_NAMES = ("low", "medium", "high")
DENSITY_EDGES = (1.0, 1.6)  # onsets per quarter note per sounding track
MAX_TRACKS = 16

# General MIDI families (program // 8), for the names of tracks that have none
FAMILIES = ("Piano", "Chromatic percussion", "Organ", "Guitar", "Bass", "Strings", "Ensemble", "Brass", "Reed",
            "Pipe", "Synth lead", "Synth pad", "Synth effects", "Ethnic", "Percussive", "Sound effects")
# names --instruments understands: program (DRUMS for drums) and the role, for voices
INSTRUMENTS: dict[str, tuple[int, str | None]] = {
    "piano": (0, None), "harpsichord": (6, None), "organ": (19, None), "guitar": (24, None),
    "electric-guitar": (27, None), "bass": (33, None), "violin": (40, None), "viola": (41, None),
    "cello": (42, None), "contrabass": (43, None), "strings": (48, None), "choir": (52, None),
    "trumpet": (56, None), "trombone": (57, None), "horn": (60, None), "sax": (65, None), "oboe": (68, None),
    "bassoon": (70, None), "clarinet": (71, None), "flute": (73, None), "recorder": (74, None),
    "drums": (DRUMS, None), "soprano": (0, "soprano"), "alto": (0, "alto"), "tenor": (0, "tenor"),
    "bass-voice": (0, "bass"), "melody": (0, "melody"),
}


@dataclass(frozen=True)
class Controls:
    """What the start of a version-2 piece says; None: not said (the model chooses)."""

    key: int | None = None  # tonic pitch class + 12 for minor
    meter: tuple[int, int] | None = None
    tempo_band: int | None = None
    density: int | None = None


def key_text(key: int) -> str:
    return f"{PITCH_CLASSES[key % 12]} {MODES[key // 12]}"


def key_scale(key: int) -> np.ndarray:
    """(12,) the pitch classes of a key: the major scale; for minor the natural minor with the
    raised seventh (harmonic minor) too."""
    steps = (0, 2, 4, 5, 7, 9, 11) if key < 12 else (0, 2, 3, 5, 7, 8, 10, 11)
    out = np.zeros(12, dtype=bool)
    out[[(key % 12 + s) % 12 for s in steps]] = True
    return out


def parse_key(text: str) -> int:
    """'D minor', 'F# major', 'Bb', 'c minor', 'Eb maj' -> key index."""
    m = re.fullmatch(r"\s*([A-Ga-g])\s*([#b♯♭-]?)\s*(major|minor|maj|min|m)?\s*", text or "", re.IGNORECASE)
    if not m:
        raise ConfigError(f"unknown key {text!r}; expected a tonic A-G with an optional # or b and major or "
                          "minor, e.g. 'D minor' or 'Bb major'")
    pc = (_PC[m.group(1).lower()] + {"#": 1, "♯": 1, "b": -1, "♭": -1, "-": -1}.get(m.group(2), 0)) % 12
    mode = (m.group(3) or "major").lower()
    return pc + (12 if mode in ("minor", "min", "m") else 0)


def parse_meter(text: str, valid) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or (int(m.group(1)), int(m.group(2))) not in set(valid):
        shown = ", ".join(f"{n}/{d}" for n, d in valid if d in (2, 4, 8) and n <= 12)
        raise ConfigError(f"unknown meter {text!r}; expected one of {shown}")
    return int(m.group(1)), int(m.group(2))


def tempo_band(qpm: float) -> int:
    return int(np.searchsorted(TEMPO_EDGES, qpm, side="right"))


def parse_density(text: str) -> int:
    if (text or "").lower() not in DENSITY_NAMES:
        raise ConfigError(f"unknown density {text!r}; expected one of {', '.join(DENSITY_NAMES)}")
    return DENSITY_NAMES.index(text.lower())


def parse_instruments(text: str) -> list[Track]:
    """'piano,violin' -> tracks; 'program:N' names any General MIDI program."""
    tracks = []
    for name in [n.strip().lower() for n in (text or "").split(",")]:
        if re.fullmatch(r"program:\d+", name) and int(name[8:]) < 128:
            prog, role = int(name[8:]), None
        elif name in INSTRUMENTS:
            prog, role = INSTRUMENTS[name]
        else:
            raise ConfigError(f"unknown instrument {name!r}; expected one of {', '.join(INSTRUMENTS)} or "
                              "program:N (0-127), separated by commas")
        tracks.append(Track(role.capitalize() if role else instrument_name(prog), prog, prog == DRUMS))
    if not 1 <= len(tracks) <= MAX_TRACKS:
        raise ConfigError(f"--instruments names {len(tracks)} tracks; give 1 to {MAX_TRACKS}")
    return tracks


def instrument_name(program: int) -> str:
    if program == DRUMS:
        return "Drums"
    for name, (prog, role) in INSTRUMENTS.items():
        if prog == program and role is None:
            return name.capitalize()
    return FAMILIES[program // 8]


def role_of(name: str) -> int | None:
    """The role index a track's name says (Soprano, 'Alto 1', 'Bass' of a choir...), else None."""
    low = (name or "").lower()
    for i, role in enumerate(ROLES):
        if re.search(rf"\b{role}\b", low):
            return i
    return None


def density_band(piece: Piece) -> int:
    """Onsets per quarter note per track that sounds, in DENSITY_NAMES bands."""
    if not len(piece):
        return 0
    quarters = max(piece.end / piece.tpq, 1.0)
    per = len(np.unique(np.stack([piece.time, piece.track]), axis=1)[0]) / quarters / len(set(piece.track.tolist()))
    return int(np.searchsorted(DENSITY_EDGES, per, side="right"))


def piece_key(piece: Piece) -> int:
    """The key the file says (``info['key']``), else the Krumhansl-Schmuckler estimate."""
    said = piece.info.get("key")
    if said:
        try:
            return parse_key(said)
        except ConfigError:
            pass
    from seqgen.music.stats import estimate_key

    tonic, mode, _ = estimate_key(piece)
    return tonic + (12 if mode == "minor" else 0)


def controls_of(piece: Piece) -> Controls:
    meter = tuple(piece.time_sigs[0, 1:].tolist()) if len(piece.time_sigs) else (4, 4)
    return Controls(piece_key(piece), meter, tempo_band(piece.qpm_at(0)), density_band(piece))
