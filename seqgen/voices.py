"""Writing tracks around given ones with a run of version-2 or -3 tokens: harmonize a melody
(the model writes the other voices its corpus has), or regenerate some tracks of a song and
keep the others note for note.

The given tracks go first in the header and in every bar; a ``Script`` forces their part of
each bar, the grammar forces the Track tokens, and the model writes the remaining parts
(``seqgen.tokenizers.tracks``: bar-major, track-minor, as MMM / MIDI-GPT; version 3 writes
them together, interleaved by onset, after the given parts). The given notes in
the result are the file's own (not their tokenized copy), so they are kept exactly. When
harmonizing, the grammar also keeps each choir voice to one note at a time, in its usual range,
starting between the voices that sound above and below it, and out of parallel fifths and
octaves with the voices already written (``TokenGrammar(voices=True)``).
"""

from __future__ import annotations

import numpy as np

from seqgen.compose import TOKENS_PER_BAR, check_controls, grammar_options, is_midi_run, merged_controls
from seqgen.errors import ConfigError, SeqgenError
from seqgen.music.controls import MAX_TRACKS, ROLES, Controls, role_of
from seqgen.music.piece import DRUMS, Piece
from seqgen.options import SamplingOptions
from seqgen.sampling import exempt_ids, generate
from seqgen.tokenizers.grammar import Constraint, Script, TokenGrammar
from seqgen.tokenizers.tracks import instrument_groups, merge_tracks

MAX_BARS = 128  # the most bars one harmonization or fill writes (each bar carries every track)
FAMILY_WORDS = {"piano": range(0, 8), "organ": range(16, 24), "guitar": range(24, 32), "bass": range(32, 40),
                "strings": range(40, 56), "brass": range(56, 64), "reed": range(64, 72), "pipe": range(72, 80),
                "synth": range(80, 104)}
# usual ranges of the choir's voices (MIDI pitches), for the grammar when harmonizing
VOICE_RANGES = {"soprano": (59, 81), "alto": (53, 74), "tenor": (47, 69), "bass": (38, 64)}


def require_tracks(gen, what: str) -> None:
    if not is_midi_run(gen):
        raise ConfigError(f"{what} needs a run trained on MIDI tokens; this one is a character model")
    if getattr(gen.tokenizer, "version", 1) < 2:
        raise SeqgenError(f"{gen.source} uses MIDI tokens of version 1, which know no tracks, so it cannot {what}; "
                          "retrain it with this seqgen (its runs read music as version-3 tokens)")


def track_list(piece: Piece) -> str:
    return ", ".join(f"{i}: {t.name}" for i, t in enumerate(piece.tracks))


def pick_tracks(piece: Piece, spec: str, option: str) -> list[int]:
    """'drums', 'bass,piano', '0,2', 'Alto' -> track indices of ``piece``; one line listing its
    tracks for a name that matches none."""
    chosen: list[int] = []
    for word in [w.strip() for w in (spec or "").split(",") if w.strip()]:
        low = word.lower()
        if low.isdigit():
            hit = [int(low)] if int(low) < len(piece.tracks) else []
        else:
            hit = [i for i, t in enumerate(piece.tracks) if t.name.lower() == low]
            if not hit and low in ("drums", "drum", "percussion"):
                hit = [i for i, t in enumerate(piece.tracks) if t.drum]
            if not hit and low in FAMILY_WORDS:
                hit = [i for i, t in enumerate(piece.tracks) if not t.drum and t.program in FAMILY_WORDS[low]]
            if not hit:
                hit = [i for i, t in enumerate(piece.tracks) if low in t.name.lower()]
        if not hit:
            raise ConfigError(f"{option} {word!r}: no such track; the file's tracks are {track_list(piece)} "
                              "(give names, numbers, drums, or an instrument family such as bass or piano)")
        chosen += [i for i in hit if i not in chosen]
    if not chosen:
        raise ConfigError(f"{option} names no track; the file's tracks are {track_list(piece)}")
    return chosen


def write_tracks(gen, given: Piece, new_tracks=None, controls: Controls | None = None,
                 options: SamplingOptions | None = None, rng: np.random.Generator | None = None, min_new: int = 1,
                 first_roles=None,
                 role_ranges: dict[int, tuple[int, int]] | None = None, distinct_roles: bool = False,
                 voices: bool = False) -> Piece:
    """``given`` (its tracks kept note for note) with more tracks written by the model, bar by bar:
    ``new_tracks`` (Track list) when given, else the tracks the model chooses (at least ``min_new``)."""
    from seqgen.tokenizers.tracks import fit_tracks, header_ids

    tok = gen.tokenizer
    given = fit_tracks(given)
    g = len(given.tracks)
    ctl = merged_controls(controls, given)
    ids = tok.encode(given, eos=False, controls=ctl, given=g)  # version 3: every given track a part of its own
    bar_at = tok.bar_indices(ids)
    n_bars = len(bar_at)
    if n_bars > MAX_BARS:
        raise ConfigError(f"the given music has {n_bars} bars; this command writes at most {MAX_BARS} bars at a time "
                          "(cut the file, or write it in parts)")
    bars = np.split(ids[bar_at[0]:], bar_at[1:] - bar_at[0])
    # the key and density asked for, not those read off the given music (its key is an estimate,
    # and its notes are kept whatever key they lean to)
    steer = grammar_options(controls, hold_key=False)
    banned = (tok.bos_id, tok.pre_id, tok.suf_id, tok.mid_id, tok.eot_id)
    head: list[int] = []  # the header tokens the model writes
    if new_tracks:
        tracks = list(given.tracks) + list(new_tracks)
        if len(tracks) > 16:
            raise ConfigError(f"{len(tracks)} tracks in all; the tokens hold at most 16")
        prompt = np.asarray(header_ids(tok, tracks, ctl), dtype=np.int64)
        header = {"min_tracks": len(tracks), "max_tracks": len(tracks)}
    else:
        header = {"min_tracks": g + min_new, "first_roles": first_roles, "distinct_roles": distinct_roles}

    def grammar() -> TokenGrammar:
        return TokenGrammar(tok, bars=n_bars, role_ranges=role_ranges, voices=voices, **header, **steer)

    if not new_tracks:
        # the tracks the model adds are the ones it finds most likely (the voices its corpus has,
        # SATB for the chorales), whatever the temperature its notes are drawn at
        for step in generate(gen.engine, ids[None, :bar_at[0]], 3 * MAX_TRACKS + 1, rng=rng, stop_id=tok.bar_id,
                             options=SamplingOptions(temperature=0), banned=banned, exempt=exempt_ids(tok),
                             constraint=Constraint([grammar()])):
            if step[0] == tok.bar_id:
                break
            head.append(int(step[0]))
        prompt = np.concatenate((ids[:bar_at[0]], np.asarray(head, dtype=np.int64)))
    constraint = Constraint([grammar()], [Script(bars, tok.bar_id)])
    written_tracks = len(new_tracks) if new_tracks else int((tok.kinds_of(head) == tok.kind_index("Track")).sum())
    steps = 16 * 8 + n_bars * TOKENS_PER_BAR * max(1, written_tracks)  # each track written may fill a bar's budget
    opts = (options or SamplingOptions()).check()
    written = []
    for step in generate(gen.engine, prompt[None], steps, rng=rng, stop_id=tok.eos_id, options=opts,
                         banned=banned, exempt=exempt_ids(tok), constraint=constraint):
        if step[0] == tok.eos_id:
            break
        written.append(int(step[0]))
    out_ids = np.concatenate((prompt, np.asarray(written, dtype=np.int64), [tok.eos_id]))
    decoded = tok.decode(out_ids, tpq=given.tpq, name=given.name)
    new = decoded.only_tracks(range(g, len(decoded.tracks)))
    piece = given.joined(new)
    piece.info = {**decoded.info, "tokens": len(head) + len(written), "given_tracks": g}
    # the given notes are the file's own: what their tokens lose (quantized unisons) is no repair of the model's
    alone = tok.decode(np.concatenate((ids, [tok.eos_id])), tpq=given.tpq).info
    for k in ("dropped_tokens", "notes_cut"):
        piece.info[k] = max(0, piece.info[k] - alone[k])
    return piece


def melody_of(piece: Piece, track: int | None) -> Piece:
    """The one track of ``piece`` to harmonize: ``track`` (0-based), or its only one."""
    if track is None:
        if len(piece.tracks) > 1:
            raise ConfigError(f"the melody file has {len(piece.tracks)} tracks ({track_list(piece)}); "
                              "say which is the melody with --melody-track N")
        track = 0
    if not 0 <= track < len(piece.tracks):
        raise ConfigError(f"--melody-track {track} is not a track of the file; its tracks are {track_list(piece)}")
    if piece.tracks[track].drum:
        raise ConfigError(f"--melody-track {track} is a drum track; give a track with pitches")
    return piece.only_tracks([track])


def harmonize(gen, melody: Piece, track: int | None = None, controls: Controls | None = None,
              options: SamplingOptions | None = None, rng: np.random.Generator | None = None,
              voices=None) -> Piece:
    """The melody as the top voice, kept note for note, and the voices the model writes below it
    (those its corpus has, e.g. alto, tenor and bass for the chorales; ``voices``: Tracks asked for)."""
    require_tracks(gen, "harmonize")
    check_controls(gen, controls)
    tune = melody_of(melody, track)
    top = tune.tracks[0]
    if role_of(top.name) is None:  # the melody takes the top voice's role, so a choir run reads it as its soprano
        from seqgen.music.piece import Track

        tune.tracks = [Track("Soprano", top.program, False)]
    ranges = {ROLES.index(name): span for name, span in VOICE_RANGES.items() if name != "soprano"}
    piece = write_tracks(gen, tune, voices, controls, options, rng, min_new=1,
                         first_roles=[ROLES.index("soprano"), ROLES.index("melody")], role_ranges=ranges,
                         distinct_roles=True, voices=True)
    piece.tracks[0] = top if role_of(top.name) is not None else piece.tracks[0]
    return piece


def fill_tracks(gen, song: Piece, fill: list[int], controls: Controls | None = None,
                options: SamplingOptions | None = None, rng: np.random.Generator | None = None) -> Piece:
    """``song`` with the tracks ``fill`` written anew (same instruments) and the others kept
    note for note; the tracks keep their places."""
    require_tracks(gen, "fill tracks")
    check_controls(gen, controls)
    if not [i for i in range(len(song.tracks)) if i not in fill]:
        raise ConfigError(f"nothing would be kept: every track of the file is to be filled ({track_list(song)})")
    song, fill, merged = merge_to_fit(song, fill)
    keep = [i for i in range(len(song.tracks)) if i not in fill]
    given = song.only_tracks(keep)
    piece = write_tracks(gen, given, [song.tracks[i] for i in fill], controls, options, rng)
    order = keep + list(fill)  # piece's tracks are in this order: put them back in the song's
    back = np.empty(len(order), dtype=np.int64)
    back[np.arange(len(order))] = order
    placed = piece.select(slice(None))
    placed.track = back[piece.track]
    placed.tracks = [None] * len(order)
    for k in order:
        placed.tracks[k] = song.tracks[k]
    placed.program = np.array([DRUMS if placed.tracks[k].drum else placed.tracks[k].program
                               for k in placed.track.tolist()], dtype=np.int64)
    placed.info["filled"] = [song.tracks[i].name for i in fill]
    if merged:
        placed.info["merged_tracks"] = merged
    return placed.sorted()


def merge_to_fit(song: Piece, fill: list[int]) -> tuple[Piece, list[int], list[str]]:
    """A song of more than MAX_TRACKS tracks with the tracks that share an instrument merged
    into one (the first one's name), ``fill`` renumbered, and a line per merge ('tracks 8, 9
    and 16 (Program 29)'); as it was when it fits. One line when it cannot fit, or when a
    merge would join a track to keep with one to fill."""
    if len(song.tracks) <= MAX_TRACKS:
        return song, list(fill), []
    groups = instrument_groups(song)
    if len(groups) > MAX_TRACKS:
        raise ConfigError(f"the file has {len(song.tracks)} tracks and {len(groups)} instruments; the tokens hold at "
                          f"most {MAX_TRACKS} tracks (tracks that share an instrument are merged), so write a file "
                          f"with fewer instruments")
    merged = []
    for g in groups:
        if len(g) > 1 and len({k in fill for k in g}) > 1:
            raise ConfigError(f"tracks {_numbers(g)} share an instrument and are merged to fit {MAX_TRACKS} tracks; "
                              "fill them or keep them together")
        if len(g) > 1:
            merged.append(f"tracks {_numbers(g)} ({song.tracks[g[0]].name})")
    out = merge_tracks(song, groups, [song.tracks[g[0]] for g in groups])
    return out, [j for j, g in enumerate(groups) if g[0] in fill], merged


def _numbers(ks: list[int]) -> str:
    return ", ".join(map(str, ks[:-1])) + f" and {ks[-1]}"
