"""Composing with a trained run: new pieces, continuations of a given piece, regenerated bars,
and tunes from a character model trained on ABC text. All sampling goes through
``seqgen.sampling`` (one loop for every engine); this module decides when to stop and turns ids
into a ``Piece``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from seqgen.engines.base import Generator
from seqgen.errors import ConfigError, MusicFileError, SeqgenError
from seqgen.music.controls import Controls
from seqgen.music.files import from_music21, quiet_music21, read_any
from seqgen.music.piece import Piece
from seqgen.sampling import SamplingOptions, complete, exempt_ids, generate, infill
from seqgen.tokenizers.grammar import Constraint, TokenGrammar
from seqgen.tokenizers.midi import K

ABC_PROMPT = "X:1\n"
TOKENS_PER_BAR = 512  # the most a composition may spend on one bar before it is cut off


def is_midi_run(gen: Generator) -> bool:
    return gen.tokenizer.kind == "music"


def sample_bars(gen, prompt: np.ndarray, bars: int, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None, batch: int = 1,
                max_tokens: int | None = None, options: SamplingOptions | None = None,
                grammar: dict | None = None) -> list[np.ndarray]:
    """Continue ``prompt`` until each row has written ``bars`` more bars; returns prompt + new ids
    per row. The token grammar (``seqgen.tokenizers.grammar``; ``grammar``: its options) masks
    what decoding would have to repair, so nothing is. The piece markers (BOS, EOS) and the
    infill sentinels are never drawn, so a piece cannot end early; ``max_tokens`` (default
    ``(bars + 1) * TOKENS_PER_BAR``) bounds a model that writes no bar lines. ``bars=0`` finishes
    the bar the prompt is in."""
    tok = gen.tokenizer
    prompt = np.asarray(prompt, dtype=np.int64)
    rows: list[list[int]] = [[] for _ in range(batch)]
    done = np.zeros(batch, dtype=bool)
    counts = np.zeros(batch, dtype=np.int64)
    banned = (tok.bos_id, tok.eos_id, tok.pre_id, tok.suf_id, tok.mid_id, tok.eot_id)
    steps = max_tokens or (bars + 1) * TOKENS_PER_BAR
    total = len(tok.bar_indices(prompt)) + bars
    constraint = Constraint([TokenGrammar(tok, bars=total, end_id=tok.bar_id, **(grammar or {})) for _ in range(batch)])
    for ids in generate(gen.engine, np.tile(prompt[None], (batch, 1)), steps, temperature, top_k, top_p, rng,
                        banned=banned, options=options, exempt=exempt_ids(tok), constraint=constraint):
        for r in np.flatnonzero(~done):
            if ids[r] == tok.eos_id:  # the grammar closes the piece after its last bar
                done[r] = True
                continue
            if ids[r] == tok.bar_id:
                counts[r] += 1
                if counts[r] > bars:
                    done[r] = True
                    continue
            rows[r].append(int(ids[r]))
        if done.all():
            break
    notes = (tok.kind_index("Pitch"), tok.kind_index("Drum"))
    for r in rows:  # a row the token budget cut off inside a note ends before that note
        if r and tok.kinds_of([r[-1]])[0] in notes:
            r.pop()
    return [np.concatenate((prompt, np.asarray(r, dtype=np.int64))) for r in rows]


def fresh_prompt(tok, controls=None, tracks=None) -> np.ndarray:
    """What a new piece starts from: version 1 "BOS Bar" (the model chooses the meter); version 2
    the header: BOS, the controls asked for and the tracks asked for (the model writes the rest)."""
    if tok.version >= 2:
        from seqgen.tokenizers.tracks import header_ids

        return np.asarray(header_ids(tok, list(tracks or []), controls or Controls()), dtype=np.int64)
    return np.array([tok.bos_id, tok.bar_id])


def grammar_options(controls=None, tracks=None, hold_key: bool = True) -> dict:
    """The grammar's options for what was asked: exactly the tracks asked for; in the key asked
    for, only its scale's pitches (``key_scale``) and steering toward its tonal centre; the
    density band asked for, as onsets per track and bar (``seqgen.tokenizers.steering``). Where
    no key is asked and ``hold_key``, the key the piece's header names (drawn by the model, or
    the prime's) is held by the same steering, without the scale mask."""
    from seqgen.music.controls import key_scale

    options: dict = {"hold_key": hold_key}
    if tracks:
        options.update(min_tracks=len(tracks), max_tracks=len(tracks))
    if controls is not None and controls.key is not None:
        options.update(scale=key_scale(controls.key), key=controls.key)
    if controls is not None and controls.density is not None:
        options["density"] = controls.density
    return options


def check_controls(gen, controls=None, tracks=None) -> None:
    if (controls not in (None, Controls()) or tracks) and getattr(gen.tokenizer, "version", 1) < 2:
        raise SeqgenError(f"{gen.source} uses MIDI tokens of version 1, which have no key, meter, tempo, instrument "
                          "or density controls; retrain it with this seqgen (its runs read music as version-3 tokens)")


def compose(gen, bars: int | None = 16, length: int | None = None, temperature: float = 1.0,
            top_k: int | None = None, top_p: float | None = None, rng: np.random.Generator | None = None,
            prime: Piece | None = None, tempo: float | None = None, options: SamplingOptions | None = None,
            controls=None, tracks=None) -> Piece:
    """A new piece of ``bars`` bars (or ``length`` tokens), after ``prime`` when given. ``options``
    (min-p, the repetition guards) replaces ``temperature``, ``top_k`` and ``top_p``. Version-2 and -3
    runs take ``controls`` (``seqgen.music.controls.Controls``) and ``tracks`` (the instruments)."""
    if not is_midi_run(gen):
        if prime is not None:
            raise ConfigError("--prime needs a run trained on MIDI tokens; this one is a character model")
        if controls not in (None, Controls()) or tracks:
            raise ConfigError("key, meter, instruments and density need a run trained on MIDI tokens; "
                              "this one is a character model")
        piece = compose_abc(gen, bars=bars, length=length, temperature=temperature, top_k=top_k, top_p=top_p, rng=rng,
                            options=options)
    else:
        tok = gen.tokenizer
        check_controls(gen, controls, tracks)
        grammar = grammar_options(controls, tracks)
        if prime is None:
            prompt = fresh_prompt(tok, controls, tracks)
        elif tok.version >= 2:
            prompt = tok.encode(prime, eos=False, controls=merged_controls(controls, prime))
        else:
            prompt = tok.encode(prime, eos=False)
        if length is not None:
            new = []
            for ids in generate(gen.engine, prompt[None], length, temperature, top_k, top_p, rng,
                                stop_id=tok.eos_id, banned=(tok.bos_id, tok.pre_id, tok.suf_id, tok.mid_id, tok.eot_id),
                                options=options, exempt=exempt_ids(tok),
                                constraint=Constraint([TokenGrammar(tok, **grammar)])):
                new.append(int(ids[0]))
            ids = np.concatenate((prompt, new))
        else:
            if prime is not None:  # the prime's trailing empty bars are room for the continuation
                prompt = _drop_trailing_bars(prompt, tok)
            more = bars - len(tok.bar_indices(prompt)) if prime is None else bars  # v1: the prompt's Bar opens bar 1
            (ids,) = sample_bars(gen, prompt, more, temperature, top_k, top_p, rng, options=options, grammar=grammar)
        piece = tok.decode(ids, name="composition")
        piece.info["tokens"] = int(len(ids) - len(prompt))
    if tempo is not None:
        piece = piece.with_tempo(tempo)
    return piece


def merged_controls(controls, piece: Piece):
    """The controls read off ``piece``, with those asked for in their place."""
    from seqgen.music.controls import controls_of

    said, asked = controls_of(piece), controls or Controls()
    fields = ("key", "meter", "tempo_band", "density")
    return Controls(*(getattr(asked, f) if getattr(asked, f) is not None else getattr(said, f) for f in fields))


def _drop_trailing_bars(ids: np.ndarray, tok) -> np.ndarray:
    """Without the empty bars at the end (the encoder adds them to hold ringing notes)."""
    bars = tok.bar_indices(ids)
    while len(bars) > 1 and np.isin(tok.kinds_of(ids[bars[-1]:]), [K["Bar"], K["TimeSig"]]).all():
        ids = ids[: bars[-1]]
        bars = bars[:-1]
    return ids


def load_piece(path: Path) -> Piece:
    """The first piece of a music file, as a user error when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise SeqgenError(f"{path} does not exist")
    try:
        return read_any(path)[0]
    except MusicFileError as e:
        raise SeqgenError(f"cannot read {path}: {e}") from None


# ---- regenerating bars ---------------------------------------------------------------------
def infill_bars(gen, piece: Piece, first: int, last: int, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, rng: np.random.Generator | None = None,
                options: SamplingOptions | None = None) -> Piece:
    """``piece`` with bars ``first``..``last`` (1-based, inclusive) written anew; every note that
    starts outside them is kept exactly (as tokenized), as are tempo, meter and pedal."""
    if not is_midi_run(gen):
        raise ConfigError("--infill needs a run trained on MIDI tokens; this one is a character model")
    if not gen.knows_infill:
        raise SeqgenError(f"{gen.source} was trained with --objective {gen.objective}, so it cannot rewrite bars; "
                          "train with --objective mixed (the default) or infill")
    tok = gen.tokenizer
    ids = tok.encode(piece)
    bar_at = tok.bar_indices(ids)
    n = len(bar_at)
    if not 1 <= first <= last <= n:
        raise ConfigError(f"--bars {first}-{last} is outside the piece, which has bars 1-{n}")
    original = tok.decode(ids, name=piece.name)
    starts = original.info["bar_starts"]
    lo, hi = starts[first - 1], (starts[last] if last < n else original.info["end"])
    start, stop = bar_at[first - 1], (bar_at[last] if last < n else len(ids) - 1)  # the bars' tokens; EOS stays
    prefix, suffix = ids[:start], ids[stop:]
    most = max(4 * (stop - start), 64 * (last - first + 1))  # room for a busier middle than the original
    (middle,) = infill(gen, prefix, suffix, most, temperature, top_k, top_p, rng, options=options)
    middle = _fit_bars(middle, ids[start:stop], tok)
    written = tok.decode(np.concatenate((prefix, middle, suffix)), name=piece.name)
    kept = original.select((original.time < lo) | (original.time >= hi))
    new = written.select((written.time >= lo) & (written.time < hi))
    new = _fit_between(new, kept)
    out = merge_notes(kept, new)
    out.info = {**written.info, "bars_rewritten": [first, last]}
    return out.sorted()


def merge_notes(kept: Piece, new: Piece) -> Piece:
    """The notes of both pieces (same tpq) in one, with ``kept``'s tempo, meter and pedals; the
    tracks are ``kept``'s when both have the same, else one per program."""
    cols = {n: np.concatenate((getattr(kept, n), getattr(new, n))) for n in ("time", "duration", "pitch", "velocity",
                                                                              "program")}
    same = kept.tracks == new.tracks
    return Piece(kept.tpq, cols["time"], cols["duration"], cols["pitch"], cols["velocity"], cols["program"],
                 kept.tempos, kept.time_sigs, kept.pedals, kept.name, dict(kept.info),
                 np.concatenate((kept.track, new.track)) if same else None, list(kept.tracks) if same else [])


def _fit_bars(middle: np.ndarray, original: np.ndarray, tok) -> np.ndarray:
    """Generated middle -> exactly the original's bars: each original bar header (Bar, TimeSig)
    followed by what the model wrote for that bar, its meter tokens removed; missing bars stay
    empty, extra ones are dropped."""
    heads = []
    for h in tok.bar_indices(original):
        k = h + 1
        while k < len(original) and tok.kinds_of(original[k : k + 1])[0] == K["TimeSig"]:
            k += 1
        heads.append(original[h:k])
    middle = middle[tok.kinds_of(middle) != K["TimeSig"]]
    segments = np.split(middle, tok.bar_indices(middle))
    bodies = [seg[1:] for seg in segments[1:]]
    if len(segments[0]):  # what the model wrote before its first Bar belongs to the first bar
        bodies[:1] = [np.concatenate((segments[0], bodies[0] if bodies else np.zeros(0, dtype=np.int64)))]
    out = []
    for i, head in enumerate(heads):
        out += [head, bodies[i] if i < len(bodies) else np.zeros(0, dtype=np.int64)]
    return np.concatenate(out).astype(np.int64)


def _fit_between(new: Piece, kept: Piece) -> Piece:
    """Drop new notes that start while an equal kept note sounds; cut them at the next equal kept onset."""
    if not len(new) or not len(kept):
        return new
    keep = np.ones(len(new), dtype=bool)
    dur = new.duration.copy()
    for i in range(len(new)):
        same = (kept.pitch == new.pitch[i]) & (kept.program == new.program[i])
        if not same.any():
            continue
        t0, t1 = kept.time[same], kept.time[same] + kept.duration[same]
        if ((t0 <= new.time[i]) & (new.time[i] < t1)).any():
            keep[i] = False
            continue
        later = t0[t0 > new.time[i]]
        if len(later):
            dur[i] = min(dur[i], int(later.min() - new.time[i]))
    new = new.select(slice(None))
    new.duration = dur
    return new.select(keep)


# ---- ABC text from a character model -------------------------------------------------------
def compose_abc(gen, bars: int | None = None, length: int | None = None, temperature: float = 1.0,
                top_k: int | None = None, top_p: float | None = None, rng: np.random.Generator | None = None,
                attempts: int = 5, options: SamplingOptions | None = None) -> Piece:
    """Sample ABC text from ``X:1`` and read it with music21; a tune that does not parse is cut
    back line by line, and sampled again (up to ``attempts`` times)."""
    tok = gen.tokenizer
    if tok.kind != "text" or tok.unknown(ABC_PROMPT + "K:|"):
        raise SeqgenError(f"{gen.source} is a text model that has not seen ABC notation (no 'X:', 'K:' or '|'); "
                          "compose needs a MIDI run or a character model trained on ABC (e.g. folk-abc)")
    length = length or (600 if bars is None else 200 + 60 * bars)
    rng = rng if rng is not None else np.random.default_rng()
    reasons = []
    for _ in range(attempts):
        text = ABC_PROMPT
        for ids in complete(gen, tok.encode(ABC_PROMPT), length, temperature, top_k, top_p, rng, options=options):
            text += tok.decode(ids)
            if _tune_ended(text):
                break
        piece, why = parse_abc(text)
        if piece is not None:
            piece.info["abc"] = piece.info.get("abc", text)
            return _first_bars(piece, bars) if bars else piece
        reasons.append(why)
    raise SeqgenError(f"the model wrote no playable ABC tune in {attempts} tries ({reasons[-1]}); "
                      "train it longer or lower --temp")


def _tune_ended(text: str) -> bool:
    body = text[len(ABC_PROMPT):]
    return "\n\n" in body.lstrip("\n") or "\nX:" in body


def parse_abc(text: str, min_notes: int = 4) -> tuple[Piece | None, str]:
    """(piece, "") for the longest prefix of whole lines music21 reads, or (None, reason)."""
    from music21 import converter, stream

    body = text.split("\n\n")[0] if "\n\n" in text.lstrip("\n") else text
    body = body.split("\nX:")[0]
    lines = body.rstrip("\n").split("\n")
    if not any(line[:2] in ("L:", "M:") for line in lines):  # music21 needs a default note length
        lines.insert(1, "L:1/8")
    why = "no notes"
    for cut in range(len(lines), 1, -1):
        candidate = "\n".join(lines[:cut]) + "\n"
        try:
            with quiet_music21():
                parsed = converter.parseData(candidate, format="abc")
            if isinstance(parsed, stream.Opus):
                parsed = parsed.scores[0]
            piece = from_music21(parsed, name="tune")
        except Exception as e:  # malformed ABC makes music21 raise many kinds of errors
            why = f"{type(e).__name__}: {str(e)[:80]}"
            continue
        if len(piece) >= min_notes:
            piece.info["abc"] = candidate
            return piece, ""
        why = f"only {len(piece)} notes"
    return None, why


def _first_bars(piece: Piece, bars: int) -> Piece:
    n, d = (piece.time_sigs[0, 1:].tolist() if len(piece.time_sigs) else (4, 4))
    end = bars * n * 4 * piece.tpq // d
    if piece.end <= end:
        return piece
    out = piece.select(piece.time < end)
    out.duration = np.minimum(out.duration, end - out.time)
    return out
