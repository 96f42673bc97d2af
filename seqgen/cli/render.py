"""seqgen render: a MIDI/MusicXML/ABC file to a WAV file through a SoundFont."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._util import err, out

SoundFont = Annotated[Optional[Path], typer.Option(
    "--soundfont", help="SoundFont (.sf2) to render with (default: $SEQGEN_SOUNDFONT, else a system one "
                        "such as Debian's timgm6mb-soundfont).")]


def render(
    source: Annotated[Path, typer.Argument(help="Music file: .mid, .midi, .musicxml, .xml, .mxl, .abc, .krn.")],
    dest: Annotated[Path, typer.Argument(help="WAV file to write.")],
    soundfont: SoundFont = None,
    sample_rate: Annotated[int, typer.Option(help="Samples per second.")] = 44100,
) -> None:
    """Render a music file to audio (the first piece of a file that holds several)."""
    from seqgen.compose import load_piece
    from seqgen.errors import ConfigError
    from seqgen.music.audio import check_audio_path, find_soundfont

    if not 8000 <= sample_rate <= 192000:
        raise ConfigError(f"--sample-rate must be between 8000 and 192000, got {sample_rate}")
    check_audio_path(dest)
    font = find_soundfont(soundfont)  # before reading the file: a missing SoundFont is the likelier mistake
    piece = load_piece(source)
    out.print(f"wrote {write_audio(piece, dest, font, sample_rate)}")


def write_audio(piece, dest: Path, soundfont: Path | None, sample_rate: int = 44100) -> Path:
    """Render and write, saying on stderr how long the audio is."""
    import time

    from seqgen.music.audio import render_wav

    start = time.perf_counter()
    path = render_wav(piece, dest, soundfont, sample_rate)
    err.print(f"[dim]rendered {piece.seconds():.1f} s of audio in {time.perf_counter() - start:.2f} s[/]")
    return path
