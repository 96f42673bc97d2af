"""Versions 2 and 3 of the MIDI tokens: controls at the start, then the bars, so any set of
tracks can be given and the rest written by a causal model.

Version 2 is bar-major, track-minor (MMM / MIDI-GPT)::

    BOS [Key] [TimeSig] [TempoBand] [Density]  Track_0 Instrument [Role]  Track_1 Instrument [Role] ...
    Bar [TimeSig]  Track_0 Position [Tempo] [PedalOff|PedalOn] [Velocity] Pitch Duration ...
                   Track_1 Position [Velocity] Pitch Duration ...   (every track, in the header's order)
    Bar ...
    EOS

Version 3 writes the first ``given`` tracks of the header so, each its part of the bar, then
``Mix`` and every other track interleaved by onset, from the header's last track up (a choir's
chord from the bass to the soprano, as version 1 sorts a chord's pitches, so a small recurrent
model hears the harmony it writes). A note needs a Track token only where its track is not the
one ``mix_track`` implies (after a choir voice, the voice above it), so a four-voice chord
costs what it costs in version 1::

    Bar [TimeSig]  Track_0 Position Pitch Duration ...  Mix  Position Pitch Duration Pitch Duration
                   Track_1 Pitch Duration Position ...

- The header lists the tracks in the order every bar lists them. Version 2 training shuffles
  that order (half of the pieces keep the file's); version 3 training gives no track in half
  of the pieces and a random set of the others, in a random order, so that given tracks can come
  first and the model writes the others (``seqgen.tokenizers.grammar`` forces the given ones).
  Such a piece is also trained on as read, ahead of its layout (``MidiTokenizer.mixed_copy``):
  the mix of every piece is learnt, as a composition and a held-out piece are written.
- The controls (key, meter, tempo band, density band) are each left out of a training piece
  with probability ``DROP``, so composing without them works; the track list is always there
  (written by the model when it is not asked for).
- Positions restart at each part; Tempo and pedal events go in the first part.

Numpy only (the onnxruntime engine reaches it through ``seqgen.tokenizers.midi``).
"""

from __future__ import annotations

import zlib

import numpy as np

from seqgen.music.controls import (MAX_TRACKS, ROLES, Controls, controls_of, instrument_name, key_text, role_of)
from seqgen.music.piece import DRUMS, TPQ, Piece, Track

DROP = 0.25  # chance that a training piece leaves out each control
CANONICAL = 0.5  # share of training pieces that keep the file's track order
EXTRA_KINDS = (("Key", 24), ("TempoBand", 8), ("Density", 3), ("Track", MAX_TRACKS), ("Instrument", 129),
               ("Role", len(ROLES)))


def instrument_groups(piece: Piece) -> list[list[int]]:
    """The piece's track numbers grouped by instrument (program, or drums), in the order the
    instruments first come."""
    inst = [DRUMS if t.drum else t.program for t in piece.tracks]
    return [[k for k, p in enumerate(inst) if p == prog] for prog in dict.fromkeys(inst)]


def merge_tracks(piece: Piece, groups: list[list[int]], tracks: list[Track]) -> Piece:
    """``piece`` with each group of its tracks made one track, ``tracks[j]`` for ``groups[j]``."""
    index = np.zeros(len(piece.tracks), dtype=np.int64)
    for j, g in enumerate(groups):
        index[g] = j
    merged = piece.select(slice(None))
    merged.track = index[piece.track]
    merged.tracks = list(tracks)
    return merged


def fit_tracks(piece: Piece) -> Piece:
    """A piece of at most MAX_TRACKS tracks: beyond that, tracks of one program are merged, then
    the tracks with the fewest notes go."""
    if len(piece.tracks) <= MAX_TRACKS:
        return piece
    groups = instrument_groups(piece)
    progs = [DRUMS if piece.tracks[g[0]].drum else piece.tracks[g[0]].program for g in groups]
    merged = merge_tracks(piece, groups, [Track(instrument_name(p), p, p == DRUMS) for p in progs])
    counts = np.bincount(merged.track, minlength=len(groups))
    keep = sorted(np.argsort(-counts, kind="stable")[:MAX_TRACKS].tolist())
    return merged.only_tracks(keep)


def training_order(n: int, seed: int) -> tuple[list[int], np.random.Generator]:
    rng = np.random.default_rng(seed)
    order = list(range(n)) if rng.random() < CANONICAL else rng.permutation(n).tolist()
    return order, rng


def training_layout(n: int, seed: int) -> tuple[list[int], int, np.random.Generator]:
    """Version 3: (track order, how many of them are given, rng). Half of the pieces give none
    (every track interleaved, in the file's order); the others give a random set of 1..n-1
    tracks, in a random order, ahead of the rest (in the file's order)."""
    rng = np.random.default_rng(seed)
    if n < 2 or rng.random() < CANONICAL:
        return list(range(n)), 0, rng
    g = int(rng.integers(1, n))
    first = rng.permutation(n)[:g].tolist()
    return first + [k for k in range(n) if k not in first], g, rng


def gives_tracks_in_training(piece: Piece) -> bool:
    """Version 3: does the piece's training layout give some of its tracks first?"""
    piece = fit_tracks(piece)
    return training_layout(max(len(piece.tracks), 1), piece_seed(piece))[1] > 0


def piece_seed(piece: Piece) -> int:
    return zlib.crc32(f"{piece.name}|{len(piece)}|{piece.end}".encode())


def header_ids(tok, tracks: list[Track], controls: Controls) -> list[int]:
    o = tok.offset
    ids = [tok.bos_id]
    if controls.key is not None:
        ids.append(o["Key"] + int(controls.key))
    if controls.meter is not None:
        ids.append(tok.sig_id(*controls.meter))
    if controls.tempo_band is not None:
        ids.append(o["TempoBand"] + int(controls.tempo_band))
    if controls.density is not None:
        ids.append(o["Density"] + int(controls.density))
    for j, t in enumerate(tracks):
        ids += [o["Track"] + j, o["Instrument"] + (DRUMS if t.drum else int(t.program))]
        role = role_of(t.name)
        if role is not None:
            ids.append(o["Role"] + role)
    return ids


def encode_v2(tok, piece: Piece, bos: bool = True, eos: bool = True, order: list[int] | None = None,
              controls: Controls | None = None, training: bool = False, given: int | None = None) -> np.ndarray:
    """Piece -> version-2 or -3 ids. ``order``: the tracks in the header's order (default: the
    file's); ``controls`` default to those read off the piece. Version 3: the first ``given`` of
    them (default none) write their part of each bar in turn, then ``Mix`` opens the others,
    interleaved by onset. ``training``: the order (and, version 3, the given set) shuffled and
    the controls dropped at random, seeded by the piece (so the corpus cache is stable)."""
    piece = fit_tracks(piece)
    n_tracks = max(len(piece.tracks), 1)
    tracks = list(piece.tracks) or [Track("Piano", 0)]
    ctl = controls if controls is not None else controls_of(piece)
    mixed = tok.version >= 3
    if training:
        if mixed:
            order, given, rng = training_layout(n_tracks, piece_seed(piece))
        else:
            order, rng = training_order(n_tracks, piece_seed(piece))
        keep = rng.random(4) >= DROP
        ctl = Controls(*(v if k else None for v, k in zip((ctl.key, ctl.meter, ctl.tempo_band, ctl.density), keep)))
    order = list(range(n_tracks)) if order is None else [int(k) for k in order]
    rank = np.empty(n_tracks, dtype=np.int64)
    rank[order] = np.arange(len(order))
    n_parts = min(int(given or 0), len(order)) if mixed else len(order)
    seg_of = np.minimum(rank, n_parts) if mixed else rank
    head = header_ids(tok, [tracks[k] for k in order], ctl)
    voice = np.array([role_of(tracks[k].name) is not None for k in order])
    body = _body(tok, piece, seg_of, rank, n_parts + mixed, mixed, voice)
    ids = head[(0 if bos else 1):] + body.tolist() + ([tok.eos_id] if eos else [])
    return np.asarray(ids, dtype=np.int64)


def _body(tok, piece: Piece, seg_of: np.ndarray, rank: np.ndarray, n_seg: int, mixed: bool,
          voice: np.ndarray) -> np.ndarray:
    """The bars: ``seg_of`` gives each track its part of a bar (version 3: the last part, opened
    by ``Mix``, holds every track not given), ``rank`` its place in the header, ``voice`` (by
    rank) whether it is a choir voice (one note at a time)."""
    r, o = tok.resolution, tok.offset
    f = r / piece.tpq
    t = np.rint(piece.time * f).astype(np.int64)
    dur_idx = tok.quantize_duration(np.maximum(piece.duration * f, 1))
    dur = tok.durations[dur_idx]
    seg = seg_of[piece.track] if len(piece) else np.zeros(0, dtype=np.int64)
    note_rank = rank[piece.track] if len(piece) else np.zeros(0, dtype=np.int64)
    drum = np.array([tr.drum for tr in piece.tracks] or [False])[piece.track] if len(piece) else np.zeros(0, bool)
    pitch = np.clip(piece.pitch, 0, 127).astype(np.int64)
    vel = np.clip(np.asarray(piece.velocity, dtype=np.int64) * tok.velocity_bins // 128, 0, tok.velocity_bins - 1)
    tt, tb = tok.tempo_events(piece, f)
    ped = np.rint(piece.pedals * f).astype(np.int64).reshape(-1, 2)
    ped_on, ped_off = ped[:, 0], ped[:, 0] + np.maximum(ped[:, 1], 1)
    end = max([1] + [int(x.max()) + 1 for x in (t, tt, ped_off) if len(x)] + ([int((t + dur).max())] if len(t) else []))
    starts, sigs = tok.bar_grid(piece, end)
    n_b, n_t, n_p, n_n = len(starts), len(tt), len(ped_on), len(t)
    n_m = n_b * n_seg  # part markers
    # events: bar, segment (-1 the bar line), time, priority, track rank, pitch, then 7 token slots
    time = np.concatenate((starts, np.repeat(starts, n_seg), tt, ped_off, ped_on, t))
    bar = np.searchsorted(starts, time, side="right") - 1
    segment = np.concatenate((np.full(n_b, -1), np.tile(np.arange(n_seg), n_b), np.zeros(n_t + 2 * n_p, dtype=np.int64),
                              seg))
    prio = np.concatenate((np.zeros(n_b), np.zeros(n_m), np.full(n_t, 1), np.full(n_p, 2), np.full(n_p, 3),
                           np.full(n_n, 4)))
    rows = len(time)
    slots = np.full((rows, 7), -1, dtype=np.int64)
    slots[:n_b, 0] = o["Bar"]
    sig_change = np.r_[True, sigs[1:] != sigs[:-1]]
    slots[:n_b, 1] = np.where(sig_change, o["TimeSig"] + sigs, -1)
    markers = np.tile(np.arange(n_seg), n_b)
    slots[n_b:n_b + n_m, 0] = np.where(mixed & (markers == n_seg - 1), o.get("Mix", -1), o["Track"] + markers)
    a = n_b + n_m
    slots[a:a + n_t, 5] = o["Tempo"] + tb
    slots[a + n_t:a + n_t + n_p, 5] = o["PedalOff"]
    slots[a + n_t + n_p:rows - n_n, 5] = o["PedalOn"]
    slots[rows - n_n:, 5] = np.where(drum, o["Drum"] + pitch, o["Pitch"] + pitch)
    slots[rows - n_n:, 6] = o["Duration"] + dur_idx
    sort_pitch = np.concatenate((np.zeros(rows - n_n, dtype=np.int64), pitch))
    sort_rank = np.concatenate((np.zeros(rows - n_n, dtype=np.int64), note_rank))
    # the mixed part lists an onset's tracks from the header's last up (a choir: bass to soprano)
    rank_key = np.where(mixed & (segment == n_seg - 1), -sort_rank, sort_rank)
    note_vel = np.concatenate((np.full(rows - n_n, -1), vel))
    order = np.lexsort((sort_pitch, rank_key, prio, time, segment, bar))
    time, prio, bar, segment, sort_rank, note_vel, slots = (
        x[order] for x in (time, prio, bar, segment, sort_rank, note_vel, slots))
    marker = np.r_[True, (segment[1:] != segment[:-1]) | (bar[1:] != bar[:-1])]  # first event of a segment
    is_event = prio > 0
    new_time = np.r_[True, (time[1:] != time[:-1]) | marker[1:]]
    slots[:, 2] = np.where(is_event & (new_time | np.r_[True, ~is_event[:-1]]), o["Position"] + time - starts[bar], -1)
    note = prio == 4
    if mixed:  # in the mixed part, a Track token where the note's track is not the one implied (mix_track)
        in_mix = note & (segment == n_seg - 1)
        after_note = np.r_[False, note[:-1] & ~new_time[1:]]
        prev = np.r_[0, sort_rank[:-1]]
        implied = np.where(after_note, mix_track(prev, voice), len(voice) - 1)
        explicit = in_mix & (sort_rank != implied)
        slots[explicit, 3] = o["Track"] + sort_rank[explicit]
    idx = np.flatnonzero(note)  # a Velocity where it changes within a bar part, and at the part's first note
    key = bar[idx] * (n_seg + 1) + segment[idx]
    emit = np.r_[True, (note_vel[idx][1:] != note_vel[idx][:-1]) | (key[1:] != key[:-1])]
    slots[idx[emit], 4] = o["Velocity"] + note_vel[idx[emit]]
    ids = slots.ravel()
    return ids[ids >= 0]


def mix_track(previous, voice):
    """Version 3's mixed part lists an onset's tracks from the header's last up. The track of a
    note that has no Track token, after a note of track ``previous`` at the same onset: the one
    before it after a choir voice (it sings one note at a time), else the same track (a chord);
    the first note at an onset is the last track's."""
    previous = np.asarray(previous)
    return previous - np.asarray(voice)[np.minimum(previous, len(voice) - 1)]


def decode_v2(tok, ids, tpq: int = TPQ, name: str = "") -> Piece:
    """Version-2 or -3 ids -> Piece with the header's tracks, repairing what is out of grammar (never
    raises). ``info`` holds the controls read, the dropped tokens and the notes cut."""
    r, o = tok.resolution, tok.offset
    f = tpq // r
    KD = {k: tok.kind_index(k) for k in ("special", "Bar", "TimeSig", "Position", "Tempo", "Velocity", "Pitch", "Drum",
                                          "Duration", "PedalOn", "PedalOff", "Key", "TempoBand", "Density", "Track",
                                          "Instrument", "Role", "Program")}
    KD["Mix"] = tok.kind_index("Mix") if tok.version >= 3 else -2
    tracks: list[list] = []  # [program, role]
    info: dict = {}
    notes, tempos, sigs, pedals, bar_starts = [], [], [], [], []
    bar_start, bar_len, cur, seg, velocity, pending, pedal_on = None, 4 * r, 0, 0, 80, None, None
    dropped, started, in_head, mix = 0, False, False, False  # mix: in a bar's mixed part (version 3)
    parts = first = 0  # version 3: the bar's parts before Mix, so its first mixed track
    headless = None  # the body began with no header
    sig_default = tok.sig_id(4, 4) - o["TimeSig"]
    for tok_id in np.asarray(ids, dtype=np.int64).ravel().tolist():
        if not 0 <= tok_id < tok.vocab_size:
            dropped += 1
            continue
        kind, val = int(tok._kind[tok_id]), int(tok._value[tok_id])
        if kind != KD["Duration"] and pending is not None:
            dropped += 1
            pending = None
        if kind == KD["special"]:
            if tok_id == tok.eos_id or (tok_id == tok.bos_id and started):
                break
            continue
        started = True
        if bar_start is None and kind in (KD["Key"], KD["TempoBand"], KD["Density"], KD["TimeSig"], KD["Track"],
                                           KD["Instrument"], KD["Role"]):
            if kind == KD["Key"]:
                info["key"] = key_text(val)
            elif kind == KD["TimeSig"]:
                info["meter"] = "%d/%d" % tok.time_sigs[val]
            elif kind == KD["TempoBand"]:
                info["tempo_band"] = val
            elif kind == KD["Density"]:
                info["density"] = val
            elif kind == KD["Track"]:
                tracks.append([0, None])
            elif kind == KD["Instrument"] and tracks:
                tracks[-1][0] = val
            elif kind == KD["Role"] and tracks:
                tracks[-1][1] = val
            else:
                dropped += 1
            continue
        if kind == KD["Bar"]:
            bar_start = 0 if bar_start is None else bar_start + bar_len
            bar_starts.append(bar_start)
            cur, in_head, seg, mix, parts = bar_start, True, 0, False, 0
            if not sigs:
                sigs.append([0, *tok.time_sigs[sig_default]])
            continue
        if bar_start is None:
            bar_start, cur, in_head = 0, 0, True
            bar_starts.append(0)
            sigs.append([0, *tok.time_sigs[sig_default]])
        if kind == KD["TimeSig"]:
            if in_head:
                bar_len = tok.bar_steps(val)
                if sigs and sigs[-1][0] == bar_start * f:
                    sigs[-1] = [bar_start * f, *tok.time_sigs[val]]
                else:
                    sigs.append([bar_start * f, *tok.time_sigs[val]])
            else:
                dropped += 1
            continue
        in_head = False
        if headless is None:  # a stream cut out of a piece (no header): its tracks as they come
            headless = not tracks
        if headless and kind in (KD["Track"], KD["Pitch"], KD["Drum"]):
            want = val + 1 if kind == KD["Track"] else max(seg, 0) + 1
            tracks += [[DRUMS if kind == KD["Drum"] else 0, None] for _ in range(want - len(tracks))]
            seg = max(seg, 0)
        if kind == KD["Mix"]:
            first, seg = parts, len(tracks) - 1
            cur, mix = bar_start, True
        elif kind == KD["Track"]:
            if val >= len(tracks):
                dropped += 1
            elif mix:  # the next notes at this onset are this track's
                seg = val
            else:
                seg, cur, parts = val, bar_start, val + 1
        elif kind == KD["Position"]:
            cur = max(cur, bar_start + min(val, bar_len - 1))
            seg = len(tracks) - 1 if mix else seg
        elif kind == KD["Tempo"]:
            tempos.append([cur * f, float(tok.tempo_values[val])])
        elif kind == KD["Velocity"]:
            velocity = min(127, int((val + 0.5) * 128 / tok.velocity_bins))
        elif kind in (KD["Pitch"], KD["Drum"]) and mix and not first <= seg < len(tracks):  # no track implied
            dropped += 1
        elif kind in (KD["Pitch"], KD["Drum"]):
            drum = bool(tracks) and tracks[min(seg, len(tracks) - 1)][0] == DRUMS
            if (kind == KD["Drum"]) != drum:
                dropped += 1
            else:
                pending = val
        elif kind == KD["Duration"]:
            if pending is None:
                dropped += 1
            else:
                notes.append([cur, int(tok.durations[val]), pending, velocity, seg])
                pending = None
                if mix and 0 <= seg < len(tracks):
                    seg = int(mix_track(seg, [role is not None for _, role in tracks]))
        elif kind == KD["PedalOn"]:
            pedal_on = cur if pedal_on is None else pedal_on
        elif kind == KD["PedalOff"]:
            if pedal_on is None:
                dropped += 1
            else:
                pedals.append([pedal_on, max(1, cur - pedal_on)])
                pedal_on = None
        else:
            dropped += 1
    if pending is not None:
        dropped += 1
    end = bar_start + bar_len if bar_start is not None else 0
    if pedal_on is not None and end > pedal_on:
        pedals.append([pedal_on, end - pedal_on])
    if not tracks:
        tracks = [[0, None]]
    a = np.array(notes, dtype=np.int64).reshape(-1, 5)
    cut = 0
    if len(a):
        over = a[:, 0] + a[:, 1] > end
        cut += int(over.sum())
        a[:, 1] = np.minimum(a[:, 1], end - a[:, 0])
        order = np.lexsort((a[:, 1], a[:, 0], a[:, 2], a[:, 4]))
        a = a[order]
        dup = np.r_[False, (a[1:, [0, 1, 2, 4]] == a[:-1, [0, 1, 2, 4]]).all(axis=1)]
        a, cut = a[~dup], cut + int(dup.sum())
    if not tempos or tempos[0][0] > 0:
        tempos.insert(0, [0, tempos[0][1] if tempos else 120.0])
    track_list = [Track(ROLES[role].capitalize() if role is not None else instrument_name(prog), int(prog),
                        prog == DRUMS) for prog, role in tracks]
    programs = np.array([t.program for t in track_list], dtype=np.int64)
    info.update({"dropped_tokens": dropped, "notes_cut": cut, "bars": len(bar_starts),
                 "bar_starts": [b * f for b in bar_starts], "end": end * f,
                 "instruments": [t.name for t in track_list],
                 "roles": [ROLES[role] if role is not None else None for _, role in tracks]})
    piece = Piece(tpq, a[:, 0] * f, a[:, 1] * f, a[:, 2], a[:, 3], programs[a[:, 4]],
                  np.array(tempos, dtype=np.float64).reshape(-1, 2), np.array(sigs, dtype=np.int64).reshape(-1, 3),
                  np.array(pedals, dtype=np.int64).reshape(-1, 2) * f, name, info, a[:, 4].copy(), track_list)
    return piece.sorted()
