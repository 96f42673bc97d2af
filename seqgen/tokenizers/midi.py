"""MIDI tokenizer: REMI-style events (Huang & Yang 2020; MidiTok's REMI with programs), in numpy.

A piece becomes::

    BOS  Bar [TimeSig]  Position [Tempo] [PedalOff|PedalOn] [Program] [Velocity] Pitch Duration ...
         Bar ...                                                     (Drum instead of Pitch for drums)
    EOS

- ``Bar`` opens the next bar; its length comes from the time signature (``TimeSig`` follows
  ``Bar`` where it changes, and always in the first bar).
- ``Position`` is the onset within the bar, in steps of 1/``resolution`` quarter note.
- ``Program`` and ``Velocity`` are emitted where they change and at the first note of every bar,
  so each bar reads on its own (what bar infilling needs) while a chorale stays compact.
- ``Duration`` is quantized to a table that is fine for short notes and coarse for long ones.
- Drums get their own ``Drum`` tokens, so transposition shifts every ``Pitch`` token and never a drum.

Encoding is vectorized (one sort of an event table); decoding repairs what a model may write
out of grammar (a Duration with no note, a note with no Duration, a Position that goes back,
a duration past the end, overlapping equal notes) and never raises.

This module imports numpy only (no torch, no music21, no miditok): the ONNX engine loads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqgen.errors import TokenizerError
from seqgen.music.piece import DRUMS, TPQ, Piece

SPECIAL = ("BOS", "EOS", "<pre>", "<suf>", "<mid>", "<eot>")
KINDS = ("special", "Bar", "TimeSig", "Position", "Tempo", "Program", "Velocity", "Pitch", "Drum", "Duration",
         "PedalOn", "PedalOff", "Key", "TempoBand", "Density", "Track", "Instrument", "Role",  # these six: version 2
         "Mix")  # version 3
VERSIONS = (1, 2, 3)
K = {name: i for i, name in enumerate(KINDS)}


def _time_signatures(max_bar_quarters: int) -> list[tuple[int, int]]:
    sigs = [(n, d) for d in (2, 4, 8, 16) for n in range(1, 17) if n * 4 / d <= max_bar_quarters]
    return sigs


def _duration_table(r: int, max_quarters: int) -> list[int]:
    steps = list(range(1, 2 * r + 1))
    for lo, hi, inc in ((2 * r, 4 * r, r // 4), (4 * r, 8 * r, r // 2), (8 * r, 64 * r, r)):
        steps += list(range(lo + inc, min(hi, max_quarters * r) + 1, inc))
    return sorted(set(s for s in steps if s <= max_quarters * r))


@dataclass(eq=True)
class MidiTokenizer:
    """The vocabulary is fixed by this config (stored in checkpoints as plain data)."""

    resolution: int = 12  # steps per quarter note: 16ths, triplet 8ths and 16ths
    max_bar_quarters: int = 8
    velocity_bins: int = 16
    tempo_bins: int = 32
    tempo_min: float = 30.0
    tempo_max: float = 240.0
    max_duration_quarters: int = 16
    version: int = 1
    # version 3: a training piece whose layout gives tracks first is also read as it is (every
    # track in the mix), so the mix is learnt from every piece; False in runs made before it and
    # in the versions before 3 (no such layout)
    mixed_copy: bool = True
    kind: str = field(default="music", compare=False)

    def __post_init__(self) -> None:
        checks = [
            (
                self.resolution in (4, 8, 12, 16, 24, 32, 48),
                f"resolution must be one of 4, 8, 12, 16, 24, 32, 48 steps per quarter, got {self.resolution}",
            ),
            (1 <= self.max_bar_quarters <= 16, f"max_bar_quarters must be in 1..16, got {self.max_bar_quarters}"),
            (2 <= self.velocity_bins <= 128, f"velocity_bins must be in 2..128, got {self.velocity_bins}"),
            (2 <= self.tempo_bins <= 256, f"tempo_bins must be in 2..256, got {self.tempo_bins}"),
            (
                0 < self.tempo_min < self.tempo_max,
                f"need 0 < tempo_min < tempo_max, got {self.tempo_min}, {self.tempo_max}",
            ),
            (
                1 <= self.max_duration_quarters <= 64,
                f"max_duration_quarters must be in 1..64, got {self.max_duration_quarters}",
            ),
            (
                self.version in VERSIONS,
                f"MIDI tokenizer version {self.version} is unknown to this seqgen (it reads 1, 2 and 3)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TokenizerError(message)
        self.mixed_copy = bool(self.mixed_copy) and self.version >= 3
        r = self.resolution
        self.time_sigs = _time_signatures(self.max_bar_quarters)
        self.durations = np.array(_duration_table(r, self.max_duration_quarters), dtype=np.int64)
        self.tempo_values = self.tempo_min * (self.tempo_max / self.tempo_min) ** (
            np.arange(self.tempo_bins) / (self.tempo_bins - 1))
        sizes = [("special", len(SPECIAL)), ("Bar", 1), ("TimeSig", len(self.time_sigs)),
                 ("Position", self.max_bar_quarters * r), ("Tempo", self.tempo_bins), ("Program", 128),
                 ("Velocity", self.velocity_bins), ("Pitch", 128), ("Drum", 128), ("Duration", len(self.durations)),
                 ("PedalOn", 1), ("PedalOff", 1)]
        if self.version >= 2:
            from seqgen.tokenizers.tracks import EXTRA_KINDS

            sizes += list(EXTRA_KINDS)
        if self.version >= 3:
            sizes.append(("Mix", 1))
        self.offset: dict[str, int] = {}
        kinds, values, n = [], [], 0
        for name, size in sizes:
            self.offset[name] = n
            kinds += [K[name]] * size
            values += list(range(size))
            n += size
        self._kind = np.array(kinds, dtype=np.int64)
        self._value = np.array(values, dtype=np.int64)
        self._sig_index = {s: i for i, s in enumerate(self.time_sigs)}

    # ---- vocabulary ---------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self._kind)

    bos_id = property(lambda self: 0)
    eos_id = property(lambda self: 1)
    pre_id = property(lambda self: 2)
    suf_id = property(lambda self: 3)
    mid_id = property(lambda self: 4)
    eot_id = property(lambda self: 5)

    @property
    def bar_id(self) -> int:
        return self.offset["Bar"]

    def token_name(self, i: int) -> str:
        k, v = KINDS[self._kind[i]], int(self._value[i])
        if k == "special":
            return SPECIAL[v]
        if k == "TimeSig":
            return f"TimeSig_{self.time_sigs[v][0]}/{self.time_sigs[v][1]}"
        if k == "Duration":
            return f"Duration_{int(self.durations[v])}"
        return k if k in ("Bar", "PedalOn", "PedalOff") else f"{k}_{v}"

    @staticmethod
    def kind_index(name: str) -> int:
        return K[name]

    def kinds_of(self, ids) -> np.ndarray:
        """The kind index (into KINDS) of each id; -1 for ids outside the vocabulary."""
        ids = np.asarray(ids, dtype=np.int64)
        ok = (ids >= 0) & (ids < self.vocab_size)
        return np.where(ok, self._kind[np.clip(ids, 0, self.vocab_size - 1)], -1)

    def sig_id(self, num: int, den: int) -> int:
        if num <= 0 or den <= 0:  # a corrupt meter
            num, den = 4, 4
        i = self._sig_index.get((int(num), int(den)))
        if i is None:  # an unusual meter: the one of nearest length with the same denominator, else 4/4
            length = num * 4 / den
            same = [s for s in self.time_sigs if s[1] == den] or [(4, 4)]
            i = self._sig_index[min(same, key=lambda s: abs(s[0] * 4 / s[1] - length))]
        return self.offset["TimeSig"] + i

    def bar_steps(self, sig_index: int) -> int:
        n, d = self.time_sigs[sig_index]
        return n * 4 * self.resolution // d

    # ---- encoding -----------------------------------------------------------------------
    def bar_grid(self, piece: Piece, end_step: int) -> tuple[np.ndarray, np.ndarray]:
        """Bar starts (steps) covering [0, end_step) and each bar's time-signature index.

        A time signature takes effect at the first bar line at or after its tick, so the bars
        always follow each other by the previous bar's length (as the decoder counts them)."""
        r = self.resolution
        four = self.sig_id(4, 4) - self.offset["TimeSig"]
        changes = sorted((int(round(t * r / piece.tpq)), self.sig_id(n, d) - self.offset["TimeSig"])
                         for t, n, d in piece.time_sigs.tolist())
        if not changes or changes[0][0] > 0:
            changes.insert(0, (0, four))
        end_step = max(int(end_step), 1)
        starts, sigs = [], []
        t, sig, i = 0, four, 0
        while t < end_step:
            while i < len(changes) and changes[i][0] <= t:
                sig = changes[i][1]
                i += 1
            length = self.bar_steps(sig)
            limit = min(changes[i][0], end_step) if i < len(changes) else end_step
            count = max(1, -(-(limit - t) // length))
            starts.append(t + length * np.arange(count))
            sigs.append(np.full(count, sig))
            t += length * count
        return np.concatenate(starts).astype(np.int64), np.concatenate(sigs).astype(np.int64)

    def quantize_duration(self, steps: np.ndarray) -> np.ndarray:
        """Index of the nearest table duration for each (clipped to the table's range)."""
        mids = (self.durations[1:] + self.durations[:-1]) / 2
        return np.searchsorted(mids, np.asarray(steps, dtype=np.float64), side="left")

    def tempo_events(self, piece: Piece, f: float) -> tuple[np.ndarray, np.ndarray]:
        """(steps, tempo bins) of the tempo changes: the first tempo at each step, then only
        changes of bin."""
        tempos = piece.tempos[np.argsort(piece.tempos[:, 0], kind="stable")] if len(piece.tempos) else np.zeros((0, 2))
        tt = np.rint(tempos[:, 0] * f).astype(np.int64)
        tb = np.abs(np.log(np.clip(tempos[:, 1], 1e-3, None))[:, None] - np.log(self.tempo_values)[None]).argmin(-1)
        if len(tb):
            last = np.r_[tt[1:] != tt[:-1], True]
            tt, tb = tt[last], tb[last]
            change = np.r_[True, tb[1:] != tb[:-1]]
            tt, tb = tt[change], tb[change]
        return tt, tb

    def encode(self, piece: Piece, bos: bool = True, eos: bool = True, order=None, controls=None,
               training: bool = False, given: int | None = None) -> np.ndarray:
        """Piece -> int64 ids (BOS ... EOS). Versions 2 and 3 (``seqgen.tokenizers.tracks``) also
        take the tracks' ``order``, the ``controls``, ``training`` (shuffled order, dropped
        controls) and (version 3) how many of the ordered tracks are ``given``, written part by part
        ahead of the others."""
        if self.version >= 2:
            from seqgen.tokenizers.tracks import encode_v2

            return encode_v2(self, piece, bos, eos, order, controls, training, given)
        r, o = self.resolution, self.offset
        f = r / piece.tpq
        t = np.rint(piece.time * f).astype(np.int64)
        dur_idx = self.quantize_duration(np.maximum(piece.duration * f, 1))
        dur = self.durations[dur_idx]
        prog = np.asarray(piece.program, dtype=np.int64)
        pitch = np.clip(piece.pitch, 0, 127).astype(np.int64)
        vel = np.clip(np.asarray(piece.velocity, dtype=np.int64) * self.velocity_bins // 128, 0, self.velocity_bins - 1)
        tt, tb = self.tempo_events(piece, f)
        ped = np.rint(piece.pedals * f).astype(np.int64).reshape(-1, 2)
        ped_on, ped_off = ped[:, 0], ped[:, 0] + np.maximum(ped[:, 1], 1)
        end = max(
            [1] + [int(x.max()) + 1 for x in (t, tt, ped_off) if len(x)] + ([int((t + dur).max())] if len(t) else [])
        )
        starts, sigs = self.bar_grid(piece, end)

        # the event table: time, priority, program, pitch, then 7 token slots
        n_b, n_t, n_p, n_n = len(starts), len(tt), len(ped_on), len(t)
        rows = n_b + n_t + 2 * n_p + n_n
        time = np.concatenate((starts, tt, ped_off, ped_on, t))
        prio = np.concatenate((np.zeros(n_b), np.full(n_t, 1), np.full(n_p, 2), np.full(n_p, 3), np.full(n_n, 4)))
        sort_prog = np.concatenate((np.zeros(rows - n_n, dtype=np.int64), prog))
        sort_pitch = np.concatenate((np.zeros(rows - n_n, dtype=np.int64), pitch))
        slots = np.full((rows, 7), -1, dtype=np.int64)
        slots[:n_b, 0] = o["Bar"]
        sig_change = np.r_[True, sigs[1:] != sigs[:-1]]
        slots[:n_b, 1] = np.where(sig_change, o["TimeSig"] + sigs, -1)
        slots[n_b : n_b + n_t, 5] = o["Tempo"] + tb
        slots[n_b + n_t : n_b + n_t + n_p, 5] = o["PedalOff"]
        slots[n_b + n_t + n_p : rows - n_n, 5] = o["PedalOn"]
        drum = prog == DRUMS
        slots[rows - n_n :, 5] = np.where(drum, o["Drum"] + pitch, o["Pitch"] + pitch)
        slots[rows - n_n :, 6] = o["Duration"] + dur_idx
        note_vel = np.concatenate((np.full(rows - n_n, -1), vel))
        order = np.lexsort((sort_pitch, sort_prog, prio, time))
        time, prio, sort_prog, note_vel, slots = (
            time[order],
            prio[order],
            sort_prog[order],
            note_vel[order],
            slots[order],
        )
        bar = np.searchsorted(starts, time, side="right") - 1
        is_bar = prio == 0
        new_time = np.r_[True, (time[1:] != time[:-1]) | is_bar[:-1]]
        slots[:, 2] = np.where(~is_bar & new_time, o["Position"] + time - starts[bar], -1)
        note = prio == 4
        for mask, col, value, base in ((note & (sort_prog != DRUMS), 3, sort_prog, o["Program"]),
                                       (note, 4, note_vel, o["Velocity"])):
            idx = np.flatnonzero(mask)
            emit = np.r_[True, (value[idx][1:] != value[idx][:-1]) | (bar[idx][1:] != bar[idx][:-1])]
            slots[idx[emit], col] = base + value[idx[emit]]
        ids = slots.ravel()
        ids = ids[ids >= 0]
        return np.concatenate(([self.bos_id] if bos else [], ids, [self.eos_id] if eos else [])).astype(np.int64)

    # ---- decoding -----------------------------------------------------------------------
    def decode(self, ids, tpq: int = TPQ, name: str = "") -> Piece:
        """Ids -> Piece, repairing what is out of grammar (never raises on any id sequence).

        Reading stops at EOS or at a second BOS. ``piece.info`` counts the dropped tokens and
        the notes cut short."""
        if self.version >= 2:
            from seqgen.tokenizers.tracks import decode_v2

            return decode_v2(self, ids, tpq, name)
        r = self.resolution
        f = tpq // r
        notes: list[list[int]] = []
        tempos: list[list[float]] = []
        sigs: list[list[int]] = []
        pedals: list[list[int]] = []
        bar_start, bar_len, next_len = None, 4 * r, None
        sig_default = self.sig_id(4, 4) - self.offset["TimeSig"]
        cur, program, velocity, pending, pedal_on = 0, 0, 80, None, None
        dropped, started, in_bar_head, bar_starts = 0, False, False, []
        for tok in np.asarray(ids, dtype=np.int64).ravel().tolist():
            if not 0 <= tok < self.vocab_size:
                dropped += 1
                continue
            kind, val = KINDS[self._kind[tok]], int(self._value[tok])
            if kind != "Duration" and pending is not None:
                dropped += 1  # a note without its Duration
                pending = None
            if kind == "special":
                if tok == self.eos_id or (tok == self.bos_id and started):
                    break
                continue
            started = True
            if kind == "Bar":
                bar_start = 0 if bar_start is None else bar_start + bar_len
                bar_starts.append(bar_start)
                if next_len is not None:
                    bar_len, next_len = next_len, None
                cur, in_bar_head = bar_start, True
                if not sigs:
                    sigs.append([0, *self.time_sigs[sig_default]])
                continue
            if bar_start is None and kind not in ("Program", "Velocity", "Duration"):  # events before any Bar
                bar_start, cur, in_bar_head = 0, 0, True
                bar_starts.append(0)
                sigs.append([0, *self.time_sigs[sig_default]])
            if kind == "TimeSig":
                length = self.bar_steps(val)
                if in_bar_head:
                    bar_len = length
                    if sigs and sigs[-1][0] == bar_start * f:
                        sigs[-1] = [bar_start * f, *self.time_sigs[val]]
                    else:
                        sigs.append([bar_start * f, *self.time_sigs[val]])
                else:
                    next_len = length
                    dropped += 1
                continue
            in_bar_head = False
            if kind == "Position":
                cur = max(cur, bar_start + min(val, bar_len - 1))
            elif kind == "Tempo":
                tempos.append([cur * f, float(self.tempo_values[val])])
            elif kind == "Program":
                program = val
            elif kind == "Velocity":
                velocity = min(127, int((val + 0.5) * 128 / self.velocity_bins))
            elif kind in ("Pitch", "Drum"):
                pending = (val, DRUMS if kind == "Drum" else program)
            elif kind == "Duration":
                if pending is None:
                    dropped += 1
                else:
                    notes.append([cur, int(self.durations[val]), pending[0], velocity, pending[1]])
                    pending = None
            elif kind == "PedalOn":
                pedal_on = cur if pedal_on is None else pedal_on
            elif kind == "PedalOff":
                if pedal_on is None:
                    dropped += 1
                else:
                    pedals.append([pedal_on, max(1, cur - pedal_on)])
                    pedal_on = None
        if pending is not None:
            dropped += 1
        end = bar_start + bar_len if bar_start is not None else 0
        if pedal_on is not None and end > pedal_on:
            pedals.append([pedal_on, end - pedal_on])
        a = np.array(notes, dtype=np.int64).reshape(-1, 5)
        cut = 0
        if len(a):
            over = a[:, 0] + a[:, 1] > end
            cut += int(over.sum())
            a[:, 1] = np.minimum(a[:, 1], end - a[:, 0])
            a, shortened = _fix_overlaps(a)
            cut += shortened
        if not tempos or tempos[0][0] > 0:
            tempos.insert(0, [0, tempos[0][1] if tempos else 120.0])
        piece = Piece(tpq, a[:, 0] * f, a[:, 1] * f, a[:, 2], a[:, 3], a[:, 4],
                      np.array(tempos, dtype=np.float64).reshape(-1, 2), np.array(sigs, dtype=np.int64).reshape(-1, 3),
                      np.array(pedals, dtype=np.int64).reshape(-1, 2) * f, name,
                      {"dropped_tokens": dropped, "notes_cut": cut, "bars": len(bar_starts),
                       "bar_starts": [b * f for b in bar_starts],
                       "end": end * f})
        return piece.sorted()

    # ---- bars ---------------------------------------------------------------------------
    def bar_indices(self, ids) -> np.ndarray:
        """Positions of the Bar tokens in ``ids``."""
        return np.flatnonzero(np.asarray(ids, dtype=np.int64) == self.bar_id)

    # ---- training hooks -----------------------------------------------------------------
    def augmentation(self, train_tokens: np.ndarray, transpose: tuple[int, int] | None):
        """The training batches' augmentation: each row transposed by its own interval in
        ``transpose``, within the pitch range ``train_tokens`` use (None: no augmentation). The
        callable takes ``(x, rng, held=None, keep=None)``, as ``transpose_batch``."""
        if transpose is None or tuple(transpose) == (0, 0):
            return None
        ids = np.asarray(train_tokens)
        p0 = self.offset["Pitch"]
        pitches = ids[(ids >= p0) & (ids < p0 + 128)].astype(np.int64) - p0
        low, high = (int(pitches.min()), int(pitches.max())) if len(pitches) else (0, 127)
        lo, hi = transpose
        return lambda x, rng, held=None, keep=None: self.transpose_batch(x, rng, lo, hi, low, high, held, keep)

    def output_ids(self, train_tokens: np.ndarray, transpose: tuple[int, int] | None) -> np.ndarray:
        """The ids of ``train_tokens``, the sentinels, and what transposition reaches: every pitch
        between the lowest and the highest the corpus uses, and (version 2 on) every key of each
        mode whose key tokens it has."""
        ids = np.asarray(train_tokens, dtype=np.int64)
        extra = [np.unique(ids), np.arange(len(SPECIAL))]
        if transpose is not None and tuple(transpose) != (0, 0):
            p0 = self.offset["Pitch"]
            pitches = ids[(ids >= p0) & (ids < p0 + 128)]
            if len(pitches):
                extra.append(np.arange(pitches.min(), pitches.max() + 1))
            if self.version >= 2:
                k0 = self.offset["Key"]
                modes = np.unique((ids[(ids >= k0) & (ids < k0 + 24)] - k0) // 12)
                extra += [k0 + 12 * m + np.arange(12) for m in modes]
        return np.unique(np.concatenate(extra))

    def transpose_batch(self, x: np.ndarray, rng: np.random.Generator, lo: int, hi: int, pitch_min: int = 0,
                        pitch_max: int = 127, held: np.ndarray | None = None,
                        keep: np.ndarray | None = None) -> np.ndarray:
        """Shift every Pitch token of each row by an interval in [lo, hi], narrowed per row so no
        pitch leaves ``pitch_min..pitch_max`` (the range the corpus uses; drums are Drum tokens and
        never move). A piece keeps its interval: a new one is drawn where a piece begins (BOS) and
        for a row that is not continued. ``held`` (B,), updated in place, carries each row's
        interval from one window to the next; ``keep`` (B,) marks the rows that continue the
        window before (a stream row whose recurrent state is carried), which start with their
        held interval instead of a fresh one, so the key does not jump where a window ends."""
        x = np.array(x, dtype=np.int64, copy=True)
        p0 = self.offset["Pitch"]
        is_pitch = (x >= p0) & (x < p0 + 128)
        lowest = np.where(is_pitch, x - p0, 10**6).min(axis=1)
        highest = np.where(is_pitch, x - p0, -1).max(axis=1)
        lo_row = np.maximum(lo, pitch_min - np.minimum(lowest, pitch_max))
        hi_row = np.minimum(hi, pitch_max - np.maximum(highest, pitch_min))
        fits = lo_row <= hi_row  # a row whose notes span more than the range stays as it is
        segment = np.cumsum(x == self.bos_id, axis=1)  # (B, L): the piece each token belongs to
        draws = np.floor(rng.random((len(x), int(segment.max(initial=0)) + 1)) * (hi_row - lo_row + 1)[:, None])
        draws = draws.astype(np.int64) + lo_row[:, None]  # (B, pieces): fresh intervals, uniform in the row's range
        if held is not None and keep is not None:
            draws[:, 0] = np.where(keep, np.clip(held, lo_row, hi_row), draws[:, 0])
        draws = np.where(fits[:, None], draws, 0)
        shift = np.take_along_axis(draws, segment, axis=1)  # (B, L)
        if held is not None:
            held[:] = shift[:, -1]
        x = np.where(is_pitch, x + shift, x)
        if self.version >= 2:  # the key control moves with the notes
            k0 = self.offset["Key"]
            is_key = (x >= k0) & (x < k0 + 24)
            v = x - k0
            x = np.where(is_key, k0 + (v % 12 + shift) % 12 + 12 * (v // 12), x)
        return x

    def training_encodings(self, piece: Piece) -> tuple[np.ndarray, np.ndarray | None]:
        """(the ids a training stream holds for ``piece``, its ids as read, or None where those are
        the same: version 1). From version 2 on a training piece has a layout of its own (tracks
        shuffled or given first, controls dropped); with ``mixed_copy`` (version 3) a piece whose
        layout gives tracks first is preceded by itself as read."""
        if self.version < 2:
            return self.encode(piece), None
        from seqgen.tokenizers.tracks import gives_tracks_in_training

        train, held = self.encode(piece, training=True), self.encode(piece)
        if self.mixed_copy and gives_tracks_in_training(piece):
            train = np.concatenate((held, train))
        return train, held

    # ---- serialization ------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = {"type": "midi", "resolution": self.resolution, "max_bar_quarters": self.max_bar_quarters,
             "velocity_bins": self.velocity_bins, "tempo_bins": self.tempo_bins, "tempo_min": self.tempo_min,
             "tempo_max": self.tempo_max, "max_duration_quarters": self.max_duration_quarters,
             "version": self.version, "vocab_size": self.vocab_size, "specials": list(SPECIAL)}
        if self.version >= 3:  # the configs of earlier versions (and their cache keys) stay as they were
            d["mixed_copy"] = self.mixed_copy
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MidiTokenizer":
        names = ("resolution", "max_bar_quarters", "velocity_bins", "tempo_bins", "tempo_min", "tempo_max",
                 "max_duration_quarters", "version")
        tok = cls(**{k: d[k] for k in names if k in d}, mixed_copy=bool(d.get("mixed_copy", False)))
        if "vocab_size" in d and d["vocab_size"] != tok.vocab_size:
            raise TokenizerError(f"MIDI tokenizer config expects {d['vocab_size']} tokens, this seqgen builds "
                                 f"{tok.vocab_size}; the checkpoint is from another seqgen version")
        return tok


def _fix_overlaps(a: np.ndarray) -> tuple[np.ndarray, int]:
    """Notes (onset, dur, pitch, vel, prog): exact repeats (same onset, duration, pitch, program)
    are dropped. Other overlaps of equal notes stay (voices in unison; the MIDI writer puts them
    on separate tracks). Returns (notes, dropped count)."""
    order = np.lexsort((a[:, 1], a[:, 0], a[:, 2], a[:, 4]))
    a = a[order]
    dup = np.r_[False, (a[1:, [0, 1, 2, 4]] == a[:-1, [0, 1, 2, 4]]).all(axis=1)]
    return a[~dup], int(dup.sum())
