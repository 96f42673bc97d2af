"""seqgen compose: write a MIDI (or MusicXML) file with a music run, or with a character model
trained on ABC text; then show its piano roll."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from seqgen.cli._options import (DEFAULTS, GENERATE_DEVICE, GENERATE_THREADS, Device, MinP, NoRepeatNgram,
                                 RepeatWindow, RepetitionPenalty, RunArg, Seed, Temp, Threads, TopK, TopP,
                                 sampling_options)
from seqgen.cli._copies import CheckCopies
from seqgen.cli._copies import check as check_copies_of
from seqgen.cli._util import err, out
from seqgen.cli.render import SoundFont



def parse_bars(text: str | None) -> tuple[int, int] | int | None:
    """'16' -> 16; '5-8' -> (5, 8)."""
    from seqgen.errors import ConfigError

    if text is None:
        return None
    try:
        if "-" in text.strip().lstrip("-"):
            a, b = (int(v) for v in text.replace("..", "-").split("-"))
            if a < 1 or b < a:
                raise ValueError
            return a, b
        n = int(text)
        if n < 1:
            raise ValueError
        return n
    except ValueError:
        raise ConfigError(
            f"cannot read --bars {text!r}; expected a count like 16, or a range like 5-8 with --infill"
        ) from None


def compose(
    run: RunArg = None,
    bars: Annotated[
        Optional[str], typer.Option(help="Bars to write (default 16); with --infill, the bars to rewrite, e.g. 5-8.")
    ] = None,
    length: Annotated[
        Optional[int], typer.Option(help="Tokens to write instead of a number of bars (characters for an ABC model).")
    ] = None,
    tempo: Annotated[
        Optional[float], typer.Option(help="Tempo of the file written, in quarter notes per minute.")
    ] = None,
    temp: Temp = DEFAULTS.temperature,
    top_k: TopK = DEFAULTS.top_k,
    top_p: TopP = DEFAULTS.top_p,
    min_p: MinP = DEFAULTS.min_p,
    repetition_penalty: RepetitionPenalty = DEFAULTS.repetition_penalty,
    repeat_window: RepeatWindow = DEFAULTS.repeat_window,
    no_repeat_ngram: NoRepeatNgram = DEFAULTS.no_repeat_ngram,
    seed: Seed = None,
    prime: Annotated[Optional[Path], typer.Option(help="Continue this MIDI/MusicXML/ABC file.")] = None,
    infill: Annotated[
        Optional[Path],
        typer.Option(help="Rewrite --bars A-B of this file, keeping the rest (runs trained with infilling)."),
    ] = None,
    harmonize: Annotated[
        Optional[Path],
        typer.Option(
            help="Harmonize the melody in this MIDI/MusicXML/ABC file: it is kept as the top voice and the "
                 "model writes the others (runs with tracks)."
        ),
    ] = None,
    melody_track: Annotated[
        Optional[int], typer.Option(help="With --harmonize: the file's track (0-based) that holds the melody.")
    ] = None,
    tracks: Annotated[
        Optional[Path],
        typer.Option(help="A song whose tracks to keep or rewrite: with --fill or --keep (runs with tracks)."),
    ] = None,
    fill: Annotated[
        Optional[str],
        typer.Option(
            help="With --tracks: the tracks to write anew, by name, number, 'drums' or family (bass, piano...), "
                 "comma-separated."
        ),
    ] = None,
    keep: Annotated[
        Optional[str],
        typer.Option(help="With --tracks: the tracks to keep note for note (the others are written anew), e.g. 0,2."),
    ] = None,
    key: Annotated[Optional[str], typer.Option(help="Key to compose in, e.g. 'D minor' (runs with tracks).")] = None,
    meter: Annotated[Optional[str], typer.Option(help="Meter, e.g. 3/4 (runs with tracks).")] = None,
    instruments: Annotated[
        Optional[str],
        typer.Option(
            help="Tracks to compose for, e.g. piano,violin or soprano,alto,tenor,bass-voice (runs with tracks)."
        ),
    ] = None,
    density: Annotated[Optional[str], typer.Option(help="Note density: low, medium, high (runs with tracks).")] = None,
    out_path: Annotated[
        Path, typer.Option("--out", help="File to write: .mid, .midi, .musicxml, .xml or .mxl.")
    ] = Path("composition.mid"),
    roll: Annotated[bool, typer.Option("--roll/--no-roll", help="Show the piano roll of the result.")] = True,
    png: Annotated[
        Optional[Path],
        typer.Option(
            "--png",
            help="Also draw the piano roll as a picture: .png, .svg or .pdf (needs the plot extra, matplotlib).",
        ),
    ] = None,
    wav: Annotated[
        Optional[Path], typer.Option("--wav", help="Also render the result to this WAV file through a SoundFont.")
    ] = None,
    soundfont: SoundFont = None,
    check_copies: CheckCopies = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print one JSON object (files written, notes, copies) instead of the piano roll."),
    ] = False,
    device: Device = GENERATE_DEVICE,
    threads: Threads = GENERATE_THREADS,
) -> None:
    """Compose music with a trained run and write it to --out."""
    import numpy as np

    from seqgen.engines.load import open_generator
    from seqgen.compose import compose as make, infill_bars, load_piece

    options = sampling_options(temp, top_k, top_p, min_p, repetition_penalty, repeat_window, no_repeat_ngram)
    span = _check(bars, length, tempo, prime, infill, harmonize, tracks, fill, keep, melody_track, instruments,
                  out_path)
    if wav is not None:
        from seqgen.music.audio import check_audio_path, find_soundfont

        check_audio_path(wav)
        soundfont = find_soundfont(soundfont)  # before composing: a missing SoundFont is known at once
    if png is not None:
        from seqgen.plots import image_format, require_matplotlib

        image_format(png)
        require_matplotlib()
    asked, voices = _controls(key, meter, tempo, density, instruments)
    rng = np.random.default_rng(seed)
    gen = open_generator(run, device=device, threads=threads)
    if harmonize is not None or tracks is not None:
        from seqgen.voices import fill_tracks, harmonize as harmonize_melody, pick_tracks, require_tracks

        require_tracks(gen, "harmonize" if harmonize is not None else "fill tracks")
        source = load_piece(harmonize if harmonize is not None else tracks)
        if harmonize is not None:
            piece = harmonize_melody(gen, source, melody_track, asked, options, rng, voices=voices)
        else:
            chosen = pick_tracks(source, fill if fill is not None else keep, "--fill" if fill is not None else "--keep")
            to_fill = chosen if fill is not None else [i for i in range(len(source.tracks)) if i not in chosen]
            piece = fill_tracks(gen, source, to_fill, asked, options, rng)
            for line in piece.info.get("merged_tracks", []):
                err.print(f"[dim]merged {line} into one track: the tokens hold at most 16 tracks[/]")
        if tempo is not None:
            piece = piece.with_tempo(tempo)
    elif infill is not None:
        source = load_piece(infill)
        piece = infill_bars(gen, source, span[0], span[1], temp, top_k, top_p, rng, options=options)
        if tempo is not None:
            piece = piece.with_tempo(tempo)
    else:
        primer = load_piece(prime) if prime is not None else None
        n_bars = span if span is not None else (None if length is not None else 16)
        piece = make(gen, bars=n_bars, length=length, temperature=temp, top_k=top_k, top_p=top_p, rng=rng,
                     prime=primer, tempo=tempo, options=options, controls=asked, tracks=voices)
    _finish(gen, piece, out_path, wav, soundfont, png, as_json, roll, check_copies,
            _asked_line(key, meter, tempo, instruments, density, piece))

def _finish(gen, piece, out_path: Path, wav, soundfont, png, as_json: bool, roll: bool, check_copies, asked_line):
    """Write the piece (and its WAV and picture), check it for copies, and show or print what was made."""
    repairs = piece.info.get("dropped_tokens", 0) + piece.info.get("notes_cut", 0)
    if repairs:
        err.print(f"[dim]repaired the model's output: {piece.info.get('dropped_tokens', 0)} stray token(s) dropped, "
                  f"{piece.info.get('notes_cut', 0)} note(s) cut short[/]")
    if not len(piece):
        err.print("[yellow]the model wrote no notes; the file is silent (train longer or raise --temp)[/]")
    from seqgen.music.files import write_piece

    path = write_piece(piece, out_path)
    copies = check_copies_of(gen, check_copies, [piece.info.get("abc", "") if gen.tokenizer.kind == "text" else piece])
    written = {"midi" if path.suffix.lower() in (".mid", ".midi") else "musicxml": str(path)}
    if wav is not None:
        from seqgen.cli.render import write_audio

        written["wav"] = str(write_audio(piece, wav, soundfont))
    if png is not None:
        from seqgen.plots import piano_roll as roll_picture

        written["png"] = str(roll_picture(piece, png, title=path.name))
    if as_json:
        import json

        result = {**written, "notes": len(piece), "seconds": round(piece.seconds(), 3),
                  "tracks": [t.name for t in piece.tracks], "key": _found_key(piece)}
        if copies is not None:
            result["copies"] = copies[0]
        out.print(json.dumps(result), markup=False, highlight=False)
        return
    if roll:
        from seqgen.cli._render import piano_roll
        from seqgen.music.roll import summary

        width = max(40, min(120, out.width - 8))
        out.print(piano_roll(piece, width=width))
        out.print(summary(piece))
        if asked_line:
            out.print(asked_line)
    for name in written.values():
        out.print(f"wrote {name}")

def _check(bars, length, tempo, prime, infill, harmonize, tracks, fill, keep, melody_track, instruments,
           out_path: Path):
    """The options that go together, checked before anything is loaded or written; the bars asked."""
    from seqgen.errors import ConfigError

    span = parse_bars(bars)
    if length is not None and length < 1:
        raise ConfigError(f"--length must be at least 1, got {length}")
    if tempo is not None and not 10 <= tempo <= 400:
        raise ConfigError(f"--tempo must be between 10 and 400 quarter notes per minute, got {tempo}")
    if prime is not None and infill is not None:
        raise ConfigError("give --prime or --infill, not both")
    if infill is not None and not isinstance(span, tuple):
        raise ConfigError("--infill needs the bars to rewrite, e.g. --bars 5-8")
    if infill is None and isinstance(span, tuple):
        raise ConfigError(f"--bars {bars} is a range; a range goes with --infill FILE (else give a count)")
    if length is not None and span is not None:
        raise ConfigError("give --bars or --length, not both")
    if out_path.suffix.lower() not in (".mid", ".midi", ".musicxml", ".xml", ".mxl"):
        raise ConfigError(f"--out {out_path.name}: expected a .mid, .midi, .musicxml, .xml or .mxl file name")
    sources = [name for name, v in (("--prime", prime), ("--infill", infill), ("--harmonize", harmonize),
                                     ("--tracks", tracks)) if v is not None]
    if len(sources) > 1:
        raise ConfigError(f"give one of --prime, --infill, --harmonize and --tracks, not {' and '.join(sources)}")
    if tracks is not None and (fill is None) == (keep is None):
        raise ConfigError("--tracks needs --fill NAMES or --keep NAMES (one of them)")
    if tracks is None and (fill is not None or keep is not None):
        raise ConfigError("--fill and --keep go with --tracks SONG")
    if melody_track is not None and harmonize is None:
        raise ConfigError("--melody-track goes with --harmonize MELODY")
    if instruments is not None and (tracks is not None or prime is not None or infill is not None):
        raise ConfigError(
            "--instruments is for new pieces and --harmonize; --tracks, --prime and --infill keep their file's"
        )
    return span


def _controls(key, meter, tempo, density, instruments):
    """The controls asked for on the command line (each bad value one line), and the tracks."""
    from seqgen.music.controls import Controls, parse_density, parse_instruments, parse_key, parse_meter, tempo_band
    from seqgen.tokenizers.midi import MidiTokenizer

    sigs = [s for s in MidiTokenizer().time_sigs]
    asked = Controls(parse_key(key) if key is not None else None,
                     parse_meter(meter, sigs) if meter is not None else None,
                     tempo_band(tempo) if tempo is not None else None,
                     parse_density(density) if density is not None else None)
    return asked, (parse_instruments(instruments) if instruments is not None else None)


def _found_key(piece) -> str:
    from seqgen.music.stats import key_name

    return key_name(piece)


def _asked_line(key, meter, tempo, instruments, density, piece) -> str:
    """'asked: key D minor, instruments piano, violin; found: key D minor, instruments Piano, Violin'."""
    from seqgen.music.controls import DENSITY_NAMES, density_band, key_text, parse_key

    asked, found = [], []
    if key is not None:
        asked.append(f"key {key_text(parse_key(key))}")
        found.append(f"key {_found_key(piece)}")
    if meter is not None:
        asked.append(f"meter {meter}")
        sig = piece.time_sigs[0, 1:].tolist() if len(piece.time_sigs) else [4, 4]
        found.append(f"meter {sig[0]}/{sig[1]}")
    if tempo is not None:
        asked.append(f"tempo {tempo:g}")
        found.append(f"tempo {piece.qpm_at(0):g}")
    if instruments is not None:
        asked.append(f"instruments {instruments}")
    if instruments is not None or len(piece.tracks) > 1:
        found.append("instruments " + ", ".join(t.name for t in piece.tracks))
    if density is not None:
        asked.append(f"density {density}")
        found.append(f"density {DENSITY_NAMES[density_band(piece)]}")
    if not found:
        return ""
    return (f"asked: {', '.join(asked)}; " if asked else "") + f"found: {', '.join(found)}"
