"""Audio from a ``Piece``: TinySoundFont (the ``tinysoundfont`` wheel, a SoundFont synthesizer in
C) plays its notes, scheduled here on the piece's tempo map, and the standard library's ``wave``
writes a 16-bit PCM WAV file atomically.

Why not symusic's ``Synthesizer``: 0.6.0's ``render`` fails on every score ("Unable to convert
function return value to a Python type"), and 0.5.9, whose ``render`` works, crashes the process
(a segmentation fault) on damaged MIDI files that 0.6.0 rejects with a message. tinysoundfont is
installed without its dependencies (``pip install --no-deps``, as the Makefile does): the one it
declares, pyaudio, is for live playback, which seqgen does not use, and needs a C build.
A SoundFont is never downloaded: it is ``--soundfont``, ``$SEQGEN_SOUNDFONT``, or one that a
Debian/Ubuntu package installs.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from seqgen.errors import MissingExtraError, SoundFontError
from seqgen.fileio import atomic_path
from seqgen.music.piece import DEFAULT_QPM, DRUMS, Piece

SOUNDFONT_ENV = "SEQGEN_SOUNDFONT"
SAMPLE_RATE = 44100
AUDIO_SUFFIXES = {".wav"}
# where Debian/Ubuntu packages put their General MIDI SoundFonts, smallest first
SYSTEM_SOUNDFONTS = (
    ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),  # 6 MB
    ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),  # 148 MB
    ("/usr/share/sounds/sf2/default-GM.sf2", "the default-GM.sf2 alternative"),
    ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "musescore-general-soundfont-small"),  # 40 MB
)
INSTALL_HINT = "sudo apt-get install timgm6mb-soundfont"


def find_soundfont(path: Path | str | None = None) -> Path:
    """The SoundFont to render with: ``path``, else ``$SEQGEN_SOUNDFONT``, else the first system one."""
    for given, what in ((path, "--soundfont"), (os.environ.get(SOUNDFONT_ENV) or None, SOUNDFONT_ENV)):
        if given is not None:
            p = Path(given).expanduser()
            if not p.is_file():
                raise SoundFontError(f"{what} {p}: no such file")
            if p.suffix.lower() not in (".sf2", ".sf3"):
                raise SoundFontError(f"{what} {p}: expected a SoundFont (.sf2 or .sf3)")
            return p
    for candidate, _package in SYSTEM_SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SoundFontError(f"no SoundFont to render audio with: pass --soundfont FILE.sf2, set {SOUNDFONT_ENV}, "
                         f"or install one ({INSTALL_HINT})")


def check_audio_path(path: Path) -> None:
    if Path(path).suffix.lower() not in AUDIO_SUFFIXES:
        raise SoundFontError(f"cannot write audio to {Path(path).name}: expected a .wav file name")


TAIL_S = 0.25  # seconds of audio after the last note ends (its release)
INSTALL_SYNTH = "pip install --no-deps tinysoundfont==0.3.7"


def tick_seconds(piece: Piece, ticks: np.ndarray) -> np.ndarray:
    """Seconds from the start at each tick, following the piece's tempo changes (``Piece.seconds``)."""
    tempos = piece.tempos[np.argsort(piece.tempos[:, 0], kind="stable")] if len(piece.tempos) else \
        np.array([[0.0, DEFAULT_QPM]])
    if tempos[0, 0] > 0:
        tempos = np.vstack(([[0.0, tempos[0, 1]]], tempos))
    at, qpm = tempos[:, 0].astype(np.float64), tempos[:, 1].astype(np.float64)
    per_tick = 60.0 / (qpm * piece.tpq)
    starts = np.concatenate(([0.0], np.cumsum(np.diff(at) * per_tick[:-1])))
    k = np.maximum(np.searchsorted(at, ticks, side="right") - 1, 0)
    return starts[k] + (np.asarray(ticks, dtype=np.float64) - at[k]) * per_tick[k]


def _synth(soundfont: Path, sample_rate: int):
    try:
        import tinysoundfont
    except ImportError:
        raise MissingExtraError(f"rendering audio needs TinySoundFont: {INSTALL_SYNTH}") from None
    synth = tinysoundfont.Synth(samplerate=int(sample_rate))
    try:
        return synth, synth.sfload(str(soundfont))
    except Exception as e:  # tinysoundfont raises its own SoundFontException, or OSError
        raise SoundFontError(
            f"cannot load the SoundFont {soundfont} ({str(e).strip()[:120] or type(e).__name__})"
        ) from None


def _events(piece: Piece, sample_rate: int) -> tuple[np.ndarray, dict[int, int]]:
    """(E, 5) int64 events [sample, on (1) or off (0), channel, pitch, velocity] in playing order
    (offs before ons at the same sample), and the channel of each program (drums on channel 9)."""
    programs = sorted(set(piece.program.tolist()))
    melodic = [c for c in range(16) if c != 9]
    channel = {
        p: 9 if p == DRUMS else melodic[i % len(melodic)] for i, p in enumerate(q for q in programs if q != DRUMS)
    }
    if DRUMS in programs:
        channel[DRUMS] = 9
    ch = np.array([channel[p] for p in piece.program.tolist()], dtype=np.int64)
    on = np.rint(tick_seconds(piece, piece.time) * sample_rate).astype(np.int64)
    off = np.rint(tick_seconds(piece, piece.time + piece.duration) * sample_rate).astype(np.int64)
    n = len(piece)
    events = np.concatenate((np.stack((on, np.ones(n, np.int64), ch, piece.pitch, piece.velocity), axis=1),
                             np.stack((off, np.zeros(n, np.int64), ch, piece.pitch, np.zeros(n, np.int64)), axis=1)))
    return events[np.lexsort((events[:, 1], events[:, 0]))], channel


def render(piece: Piece, soundfont: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(samples, 2) float32 stereo audio of ``piece``, to a quarter second after its last note ends."""
    synth, sfid = _synth(soundfont, sample_rate)
    events, channel = _events(piece, sample_rate)
    for program, ch in channel.items():
        if program == DRUMS:
            synth.program_select(ch, sfid, 128, 0, is_drums=True)
        else:
            synth.program_select(ch, sfid, 0, int(program))
    parts, pos = [], 0
    for sample, is_on, ch, pitch, velocity in events.tolist():
        if sample > pos:
            parts.append(np.frombuffer(synth.generate(sample - pos), dtype=np.float32).copy())
            pos = sample
        if is_on:
            synth.noteon(ch, pitch, velocity)
        else:
            synth.noteoff(ch, pitch)
    end = int(round((piece.seconds() + TAIL_S) * sample_rate)) if len(piece) else 0
    if end > pos:
        parts.append(np.frombuffer(synth.generate(end - pos), dtype=np.float32).copy())
    return np.concatenate(parts).reshape(-1, 2) if parts else np.zeros((0, 2), dtype=np.float32)


def write_wav(audio: np.ndarray, path: Path, sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM WAV of (samples, channels) float audio, peak-normalized when it clips."""
    a = np.asarray(audio, dtype=np.float32).reshape(len(audio), -1)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak > 1.0:
        a = a / peak
    pcm = np.clip(np.rint(a * 32767), -32768, 32767).astype("<i2")
    path = Path(path)
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(a.shape[1])
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(pcm.tobytes())
    return path


def render_wav(piece: Piece, path: Path, soundfont: Path | str | None = None, sample_rate: int = SAMPLE_RATE) -> Path:
    """Render ``piece`` with the SoundFont ``find_soundfont`` chooses and write it to ``path``."""
    check_audio_path(path)
    return write_wav(render(piece, find_soundfont(soundfont), sample_rate), path, sample_rate)
