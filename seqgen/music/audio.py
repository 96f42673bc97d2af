"""Audio from a ``Piece``: symusic's ``Synthesizer`` (a SoundFont synthesizer in C++) renders it,
and the standard library's ``wave`` writes a 16-bit PCM WAV file atomically.

symusic is pinned below 0.6: 0.6.0's ``Synthesizer.render`` fails on every score ("Unable to
convert function return value to a Python type"); 0.5.9 returns a (channels, samples) array.
A SoundFont is never downloaded (symusic's ``BuiltInSF*`` helpers would): it is ``--soundfont``,
``$SEQGEN_SOUNDFONT``, or one that a Debian/Ubuntu package installs.
"""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from seqgen.errors import SoundFontError
from seqgen.fileio import atomic_path
from seqgen.music.piece import Piece

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


def render(piece: Piece, soundfont: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(samples, 2) float32 stereo audio of ``piece``, cut a quarter second after its last note ends."""
    import symusic

    from seqgen.music.files import to_symusic

    try:
        synth = symusic.Synthesizer(sf_path=str(soundfont), sample_rate=int(sample_rate))
    except Exception as e:  # the synthesizer reports an unreadable SoundFont as a RuntimeError
        raise SoundFontError(f"cannot load the SoundFont {soundfont} ({str(e).strip()[:120] or type(e).__name__})") from None
    audio = np.asarray(synth.render(to_symusic(piece), stereo=True), dtype=np.float32).T  # (S, 2)
    keep = int(round((piece.seconds() + 0.25) * sample_rate)) if len(piece) else 0
    return audio[:keep] if len(audio) > keep else audio


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
