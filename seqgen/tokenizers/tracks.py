"""Version 2 of the MIDI tokens: controls at the start, then bar-major, track-minor bars (MMM /
MIDI-GPT), so any set of tracks can be given and the rest written by a causal model::

    BOS [Key] [TimeSig] [TempoBand] [Density]  Track_0 Instrument [Role]  Track_1 Instrument [Role] ...
    Bar [TimeSig]  Track_0 Position [Tempo] [PedalOff|PedalOn] [Velocity] Pitch Duration ...
                   Track_1 Position [Velocity] Pitch Duration ...   (every track, in the header's order)
    Bar ...
    EOS

- The header lists the tracks in the order every bar lists them; training shuffles that order
  (half of the pieces keep the file's) so that given tracks can come first and the model
  writes the others (``seqgen.tokenizers.grammar`` forces the given ones).
- The controls (key, meter, tempo band, density band) are each left out of a training piece
  with probability ``DROP``, so composing without them works; the track list is always there
  (written by the model when it is not asked for).
- Positions restart at each Track token; Tempo and pedal events go in the first track's part.

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
              controls: Controls | None = None, training: bool = False) -> np.ndarray:
    """Piece -> version-2 ids. ``order``: the tracks in bar order (default: the file's);
    ``controls`` default to those read off the piece. ``training``: the order shuffled and the
    controls dropped at random, seeded by the piece (so the corpus cache is stable)."""
    piece = fit_tracks(piece)
    n_tracks = max(len(piece.tracks), 1)
    tracks = list(piece.tracks) or [Track("Piano", 0)]
    ctl = controls if controls is not None else controls_of(piece)
    if training:
        order, rng = training_order(n_tracks, piece_seed(piece))
        keep = rng.random(4) >= DROP
        ctl = Controls(*(v if k else None for v, k in zip((ctl.key, ctl.meter, ctl.tempo_band, ctl.density), keep)))
    order = list(range(n_tracks)) if order is None else [int(k) for k in order]
    seg_of = np.empty(n_tracks, dtype=np.int64)
    seg_of[order] = np.arange(len(order))
    head = header_ids(tok, [tracks[k] for k in order], ctl)
    body = _body(tok, piece, seg_of, len(order))
    ids = head[(0 if bos else 1):] + body.tolist() + ([tok.eos_id] if eos else [])
    return np.asarray(ids, dtype=np.int64)


def _body(tok, piece: Piece, seg_of: np.ndarray, n_seg: int) -> np.ndarray:
    r, o = tok.resolution, tok.offset
    f = r / piece.tpq
    t = np.rint(piece.time * f).astype(np.int64)
    dur_idx = tok.quantize_duration(np.maximum(piece.duration * f, 1))
    dur = tok.durations[dur_idx]
    seg = seg_of[piece.track] if len(piece) else np.zeros(0, dtype=np.int64)
    drum = np.array([tr.drum for tr in piece.tracks] or [False])[piece.track] if len(piece) else np.zeros(0, bool)
    pitch = np.clip(piece.pitch, 0, 127).astype(np.int64)
    vel = np.clip(np.asarray(piece.velocity, dtype=np.int64) * tok.velocity_bins // 128, 0, tok.velocity_bins - 1)
    tt, tb = tok.tempo_events(piece, f)
    ped = np.rint(piece.pedals * f).astype(np.int64).reshape(-1, 2)
    ped_on, ped_off = ped[:, 0], ped[:, 0] + np.maximum(ped[:, 1], 1)
    end = max([1] + [int(x.max()) + 1 for x in (t, tt, ped_off) if len(x)] + ([int((t + dur).max())] if len(t) else []))
    starts, sigs = tok.bar_grid(piece, end)
    n_b, n_t, n_p, n_n = len(starts), len(tt), len(ped_on), len(t)
    n_m = n_b * n_seg  # track markers
    # events: bar, segment (-1 the bar line), time, priority, pitch, then 6 token slots
    time = np.concatenate((starts, np.repeat(starts, n_seg), tt, ped_off, ped_on, t))
    bar = np.searchsorted(starts, time, side="right") - 1
    segment = np.concatenate((np.full(n_b, -1), np.tile(np.arange(n_seg), n_b), np.zeros(n_t + 2 * n_p, dtype=np.int64),
                              seg))
    prio = np.concatenate((np.zeros(n_b), np.zeros(n_m), np.full(n_t, 1), np.full(n_p, 2), np.full(n_p, 3),
                           np.full(n_n, 4)))
    rows = len(time)
    slots = np.full((rows, 6), -1, dtype=np.int64)
    slots[:n_b, 0] = o["Bar"]
    sig_change = np.r_[True, sigs[1:] != sigs[:-1]]
    slots[:n_b, 1] = np.where(sig_change, o["TimeSig"] + sigs, -1)
    slots[n_b:n_b + n_m, 0] = o["Track"] + np.tile(np.arange(n_seg), n_b)
    a = n_b + n_m
    slots[a:a + n_t, 4] = o["Tempo"] + tb
    slots[a + n_t:a + n_t + n_p, 4] = o["PedalOff"]
    slots[a + n_t + n_p:rows - n_n, 4] = o["PedalOn"]
    slots[rows - n_n:, 4] = np.where(drum, o["Drum"] + pitch, o["Pitch"] + pitch)
    slots[rows - n_n:, 5] = o["Duration"] + dur_idx
    sort_pitch = np.concatenate((np.zeros(rows - n_n, dtype=np.int64), pitch))
    note_vel = np.concatenate((np.full(rows - n_n, -1), vel))
    order = np.lexsort((sort_pitch, prio, time, segment, bar))
    time, prio, bar, segment, note_vel, slots = (x[order] for x in (time, prio, bar, segment, note_vel, slots))
    marker = np.r_[True, (segment[1:] != segment[:-1]) | (bar[1:] != bar[:-1])]  # first event of a segment
    is_event = prio > 0
    new_time = np.r_[True, (time[1:] != time[:-1]) | marker[1:]]
    slots[:, 2] = np.where(is_event & (new_time | np.r_[True, ~is_event[:-1]]), o["Position"] + time - starts[bar], -1)
    note = prio == 4
    idx = np.flatnonzero(note)
    key = segment[idx] * 10**6 + bar[idx]
    emit = np.r_[True, (note_vel[idx][1:] != note_vel[idx][:-1]) | (key[1:] != key[:-1])]
    slots[idx[emit], 3] = o["Velocity"] + note_vel[idx[emit]]
    ids = slots.ravel()
    return ids[ids >= 0]


def decode_v2(tok, ids, tpq: int = TPQ, name: str = "") -> Piece:
    """Version-2 ids -> Piece with the header's tracks, repairing what is out of grammar (never
    raises). ``info`` holds the controls read, the dropped tokens and the notes cut."""
    r, o = tok.resolution, tok.offset
    f = tpq // r
    KD = {k: tok.kind_index(k) for k in ("special", "Bar", "TimeSig", "Position", "Tempo", "Velocity", "Pitch", "Drum",
                                          "Duration", "PedalOn", "PedalOff", "Key", "TempoBand", "Density", "Track",
                                          "Instrument", "Role", "Program")}
    tracks: list[list] = []  # [program, role]
    info: dict = {}
    notes, tempos, sigs, pedals, bar_starts = [], [], [], [], []
    bar_start, bar_len, cur, seg, velocity, pending, pedal_on = None, 4 * r, 0, 0, 80, None, None
    dropped, started, in_head = 0, False, False
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
            cur, in_head, seg = bar_start, True, 0
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
        if kind == KD["Track"]:
            if val < len(tracks):
                seg, cur = val, bar_start
            else:
                dropped += 1
        elif kind == KD["Position"]:
            cur = max(cur, bar_start + min(val, bar_len - 1))
        elif kind == KD["Tempo"]:
            tempos.append([cur * f, float(tok.tempo_values[val])])
        elif kind == KD["Velocity"]:
            velocity = min(127, int((val + 0.5) * 128 / tok.velocity_bins))
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
                 "instruments": [t.name for t in track_list]})
    piece = Piece(tpq, a[:, 0] * f, a[:, 1] * f, a[:, 2], a[:, 3], programs[a[:, 4]],
                  np.array(tempos, dtype=np.float64).reshape(-1, 2), np.array(sigs, dtype=np.int64).reshape(-1, 3),
                  np.array(pedals, dtype=np.int64).reshape(-1, 2) * f, name, info, a[:, 4].copy(), track_list)
    return piece.sorted()
