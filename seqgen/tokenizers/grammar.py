"""What the MIDI token grammar allows next, so that sampling never writes what decoding would
have to repair (``seqgen.sampling`` masks the rest before drawing, in every engine).

``TokenGrammar`` follows one row: ``push(id)`` reads a token, ``allowed()`` is the (V,) mask of
the tokens that may follow. It knows every version: version 1 (one stream per bar, Program
tokens), version 2 (a header of controls and tracks, then every bar lists its tracks in the
header's order; ``seqgen.tokenizers.tracks``) and version 3 (the given tracks' parts, then the
others interleaved by onset behind ``Mix``; ``seqgen.tokenizers.mixed``). Rules: a Duration only
right after a note; a note only after a Position, and only a Duration after it; a Position never
goes back within a bar (a bar part of versions 2 and 3); the same note never twice at one
position; PedalOff only while the pedal is down; in the last bar (``bars``) no duration runs
past the end and then only EOS; a meter given in the header holds in every bar; ``ranges`` keeps
a track's pitches in a range; ``key`` and ``density`` steer toward the key and the density band
asked for (``seqgen.tokenizers.steering``: the tonal centre the key estimate reads, and the
onsets each track's part of a bar holds); with ``hold_key``, a key the header names where none
was asked (the model drew it, or a prime's header carries it) is steered toward the same way,
without the asked key's scale mask, so the piece stays in the key it set out in.

``Script`` forces tokens: the given tracks' part of each bar, written ahead of the model's.
``Constraint`` is what the sampler takes: one grammar (and script) per row.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from seqgen.tokenizers.mixed import MAX_CHORD, MixedPart
from seqgen.tokenizers.steering import KeySteer, density_bounds
from seqgen.tokenizers.tracks import mix_track

HEADER_ORDER = ("Key", "TimeSig", "TempoBand", "Density")


class TokenGrammar(MixedPart):
    def __init__(self, tok, bars: int | None = None, ranges: dict[int, tuple[int, int]] | None = None,
                 min_tracks: int = 1, max_tracks: int = 16, first_roles=None, role_ranges=None,
                 distinct_roles: bool = False, end_id: int | None = None, voices: bool = False, scale=None,
                 key: int | None = None, density: int | None = None, hold_key: bool = False):
        self.tok, self.bars, self.ranges = tok, bars, dict(ranges or {})
        self.voices = voices  # tracks with a role (choir voices) sing one note at a time and never cross
        self.scale = None if scale is None else np.asarray(scale, dtype=bool)  # (12,) pitch classes allowed
        self.sung: dict[int, list[tuple[int, int, int]]] = {}  # part -> [(start, end, pitch)] in steps
        self.key_steer = None if key is None else KeySteer(key, tok.resolution)
        self.hold_key = hold_key  # a Key token of the header steers when no key was asked
        self.density = density  # the band asked for (v2): onsets per part of a bar (steering.density_bounds)
        self.onsets = 0  # positions with a note in the current part (v2: track part of a bar)
        self.end_id = tok.eos_id if end_id is None else end_id  # what closes the last bar (a caller may stop at a Bar)
        self.role_ranges = dict(role_ranges or {})  # role index -> (lowest, highest) pitch
        self.distinct_roles = distinct_roles  # a role once taken is not taken again
        self.roles: list[int | None] = []  # v2: role of each declared track
        self.min_tracks, self.max_tracks = min_tracks, max_tracks
        self.first_roles = None if first_roles is None else list(first_roles)  # roles the first track may take
        self.v2 = tok.version >= 2
        self.v3 = tok.version >= 3  # given parts, then Mix and the other tracks interleaved by onset
        self.given: int | None = None  # v3: parts before Mix (read at the first bar's Mix)
        self.mix = False  # v3: in the bar's mixed part (seg: the track of a note without a Track token)
        self.note_track = -1  # v3 mix: the track of the last note
        self.mix_onsets: dict[int, int] = {}  # v3 mix: onsets of each track in this bar
        self.o = tok.offset
        self.V = tok.vocab_size
        self.kind = tok._kind
        self._k = {n: tok.kind_index(n) for n in ("Bar", "TimeSig", "Position", "Tempo", "Program", "Velocity",
                                                   "Pitch", "Drum", "Duration", "PedalOn", "PedalOff")}
        if self.v2:
            self._k.update({n: tok.kind_index(n) for n in ("Key", "TempoBand", "Density", "Track", "Instrument",
                                                           "Role")})
        self._k["Mix"] = tok.kind_index("Mix") if self.v3 else -2
        self._masks = {n: self.kind == i for n, i in self._k.items()}
        self.n_pos = int(self._masks["Position"].sum())
        self.phase = "start"  # start -> header (v2) -> body -> end
        self.stage = 0  # header: the next control slot that may come
        self.tracks: list[int] = []  # v2: instrument of each declared track
        self.expect = None  # header: "instrument" right after a Track token
        self.meter: int | None = None  # a TimeSig id the header fixed
        self.bar = 0
        self.bar_len = 4 * tok.resolution
        self.bar_start = 0  # steps from the start of the piece to this bar
        self.max_end = 0  # the furthest a note written so far sounds (steps)
        self.in_head = False
        self.seg = -1
        self.pos = -1  # the current position in the bar (or track part); -1: none yet
        self.last = None  # what the previous body token was: "pos", "vel", "note", "dur", "event", "marker"
        self.here: set[int] = set()  # notes (ids) written at the current position of this part
        self.pedal = False
        self._relaxed = 0  # voice-leading rules set aside for a step they would leave nothing to write (1: the
        # neighbours' bounds, 2: the parallels too)

    # ---- reading -------------------------------------------------------------------------
    def push(self, i: int) -> None:
        tok, k = self.tok, int(self.kind[i]) if 0 <= i < self.V else -1
        if i == tok.bos_id:
            self.phase = "header" if self.v2 else "body"
            return
        if i == tok.eos_id:
            self.phase = "end"
            return
        if self.phase == "start":
            self.phase = "header" if self.v2 else "body"
        if self.phase == "header":
            if k == self._k["Bar"]:
                self.phase = "body"
            else:
                self._push_header(i, k)
                return
        self._push_body(i, k)

    def _push_header(self, i: int, k: int) -> None:
        names = {self._k[n]: n for n in HEADER_ORDER}
        if k in names:
            self.stage = HEADER_ORDER.index(names[k]) + 1
            if k == self._k["TimeSig"]:
                self.meter = i
            if k == self._k["Key"] and self.hold_key and self.key_steer is None:
                self.key_steer = KeySteer(int(self.tok._value[i]), self.tok.resolution)
        elif k == self._k["Track"]:
            self.stage, self.expect = len(HEADER_ORDER), "instrument"
            self.tracks.append(0)
            self.roles.append(None)
        elif k == self._k["Instrument"]:
            self.tracks[-1] = int(self.tok._value[i])
            self.expect = "role"
        elif k == self._k["Role"]:
            self.expect = None
            self.roles[-1] = int(self.tok._value[i])

    def _push_body(self, i: int, k: int) -> None:
        K = self._k
        if k == K["Bar"]:
            if self.bar > 0:
                self.bar_start += self.bar_len
            self.bar += 1
            self.in_head, self.seg, self.pos, self.last, self.here = True, -1, -1, "marker", set()
            self.onsets, self.mix, self.mix_onsets = 0, False, {}
            return
        if k == K["TimeSig"]:
            self.bar_len = self.tok.bar_steps(int(self.tok._value[i]))
            self.in_head = False
            return
        self.in_head = False
        if k == K["Mix"]:
            if self.given is None:
                self.given = self.seg + 1
            self.mix, self.seg, self.pos, self.last, self.here = True, len(self.tracks) - 1, -1, "marker", set()
        elif self.mix and k == K["Track"]:  # the next notes at this onset are this track's
            self.seg, self.last, self.here = int(self.tok._value[i]), "track", set()
        elif self.v2 and k == K["Track"]:
            self.seg, self.pos, self.last, self.here = int(self.tok._value[i]), -1, "marker", set()
            self.onsets = 0
        elif k == K["Position"]:
            self.pos, self.last, self.here = int(self.tok._value[i]), "pos", set()
            if self.mix:
                self.seg = len(self.tracks) - 1
        elif k in (K["Tempo"], K["PedalOn"], K["PedalOff"]):
            self.last = "event"
            if k != K["Tempo"]:
                self.pedal = k == K["PedalOn"]
        elif k == K["Velocity"]:
            self.last = "vel"
        elif k == K["Program"]:
            self.last = "program"
        elif k in (K["Pitch"], K["Drum"]):
            self.last = "note"
            self.note = i
        elif k == K["Duration"]:
            self.last = "dur"
            if self.mix:
                self.mix_onsets[self.seg] = self.mix_onsets.get(self.seg, 0) + (not self.here)
            self.onsets += not self.here
            self.here.add(self.note)
            start = self.bar_start + self.pos
            end = start + int(self.tok.durations[self.tok._value[i]])
            if self.key_steer is not None and self.kind[self.note] == self._k["Pitch"]:
                self.key_steer.add(int(self.tok._value[self.note]), end - start)
            self.max_end = max(self.max_end, end)
            if self.voices:
                self.sung.setdefault(self.seg, []).append((start, end, int(self.tok._value[self.note])))
            if self.mix and 0 <= self.seg < len(self.roles):  # the track a next note without a Track token is in
                self.note_track = self.seg
                implied = int(mix_track(self.seg, [r is not None for r in self.roles]))
                if implied != self.seg:
                    self.seg, self.here = implied, set()

    # ---- what may follow -----------------------------------------------------------------
    def allowed(self) -> np.ndarray:
        m = np.zeros(self.V, dtype=bool)
        tok = self.tok
        if self.phase == "end":
            m[tok.eos_id] = True
            return m
        if self.phase == "start":
            m[tok.bos_id] = True
            return m
        if self.phase == "header":
            return self._header_allowed(m)
        return self._body_allowed(m)

    def _header_allowed(self, m: np.ndarray) -> np.ndarray:
        o, tok = self.o, self.tok
        if self.expect == "instrument":
            m[self._masks["Instrument"]] = True
            return m
        if len(self.tracks) >= self.max_tracks:  # the tracks asked for are all there
            m[tok.bar_id] = True
            return m
        if not self.tracks:
            for j, name in enumerate(HEADER_ORDER):
                if j >= self.stage:
                    m[self._masks[name]] = True
        if self.expect == "role":
            if len(self.tracks) == 1 and self.first_roles is not None:
                m[[o["Role"] + r for r in self.first_roles]] = True
            else:
                m[self._masks["Role"]] = True
            if self.distinct_roles:
                m[[o["Role"] + r for r in self.roles if r is not None]] = False
        if len(self.tracks) < self.max_tracks:
            m[o["Track"] + len(self.tracks)] = True
        if len(self.tracks) >= self.min_tracks:
            m[tok.bar_id] = True
        return m

    def _end_of_part(self, m: np.ndarray) -> None:
        """The tokens that close the current bar part: the next Track, else Bar or EOS (version
        3: the next given part, else Mix; the mixed part closes the bar)."""
        if self.v3 and not self.mix:
            nxt = self.seg + 1
            if nxt < (len(self.tracks) if self.given is None else self.given):
                m[self.o["Track"] + nxt] = True
            if self.given is None or nxt >= self.given:
                m[self.o["Mix"]] = True
        elif self.v2 and not self.v3 and self.seg + 1 < len(self.tracks):
            m[self.o["Track"] + self.seg + 1] = True
        elif self.bars is not None and self.bar >= self.bars:
            m[self.end_id] = True
        else:
            m[self.tok.bar_id] = True

    def _notes(self, m: np.ndarray) -> None:
        if self.v2:
            drum = self.tracks[self.seg] == 128 if 0 <= self.seg < len(self.tracks) else False
            kind = "Drum" if drum else "Pitch"
            m[self._masks[kind]] = True
            role = self.roles[self.seg] if 0 <= self.seg < len(self.roles) else None
            lo, hi = self.ranges.get(self.seg, self.role_ranges.get(role, (0, 127)))
            base = self.o[kind]
            m[base:base + lo] = False
            m[base + hi + 1:base + 128] = False
        else:
            m[self._masks["Pitch"] | self._masks["Drum"]] = True
        if len(self.here) >= MAX_CHORD or (self.here and self._is_voice()):
            m[self._masks["Pitch"] | self._masks["Drum"]] = False
        elif self.here:
            m[list(self.here)] = False
        base = self.o["Pitch"]
        if self.scale is not None:
            m[base:base + 128] &= np.tile(self.scale, 11)[:128]
        if self._is_voice() and self._relaxed < 2:  # between the voice above and the one below, where they sound
            t = self.bar_start + max(self.pos, 0)
            above = self._sounding(self.seg - 1, t) if self._is_voice(self.seg - 1) else None
            below = self._sounding(self.seg + 1, t) if self._is_voice(self.seg + 1) else None
            if above is not None and not self._relaxed:
                m[base + above + 1:base + 128] = False
            if below is not None and not self._relaxed:
                m[base:base + below] = False
            self._no_parallels(m, t)
        if self.key_steer is not None:  # toward the tonal centre of the key asked for, when it wavers
            pcs = self.key_steer.allowed()
            if pcs is not None:
                keep = np.tile(pcs, 11)[:128]
                if (m[base:base + 128] & keep).any():
                    m[base:base + 128] &= keep

    def _no_parallels(self, m: np.ndarray, t: int) -> None:
        """No parallel fifths or octaves with a voice already written: from a perfect fifth or
        octave (mod 12) at the onset before ``t`` (the piece's last onset before it, so a rest
        in either voice between them hides nothing) to the same at ``t``, both voices moving
        the same way."""
        starts = [next((a for a, _, _ in reversed(notes) if a < t), None) for notes in self.sung.values()]
        t0 = max((a for a in starts if a is not None), default=None)
        before = None if t0 is None else self._sounding(self.seg, t0)
        if before is None:
            return
        base = self.o["Pitch"]
        for other in self.sung:
            if other == self.seg:
                continue
            q, p = self._sounding(other, t0), self._sounding(other, t)
            if q is None or p is None or p == q or abs(before - q) % 12 not in (0, 7):
                continue
            for cand in range(128):  # the pitches that would make the same interval, moving the same way
                if abs(cand - p) % 12 == abs(before - q) % 12 and cand != before and (cand > before) == (p > q):
                    m[base + cand] = False

    def _is_voice(self, seg: int | None = None) -> bool:
        seg = self.seg if seg is None else seg
        return self.voices and 0 <= seg < len(self.roles) and self.roles[seg] is not None

    def _free(self, seg: int) -> int:
        """Where in the bar a track may start its next note (a choir voice: once its last ends)."""
        return self.sung[seg][-1][1] - self.bar_start if self._is_voice(seg) and self.sung.get(seg) else 0

    def _sounding(self, seg: int, t: int) -> int | None:
        for start, end, pitch in reversed(self.sung.get(seg, [])):
            if start <= t < end:
                return pitch
        return None

    def _positions_after(self, m: np.ndarray, first: int) -> None:
        base = self.o["Position"]
        if self.mix:  # where some track is free
            first = max(first, min((self._free(k) for k in self._mixed()), default=0))
        elif self._is_voice() and self.sung.get(self.seg):  # one note at a time: after the last one ends
            first = max(first, self.sung[self.seg][-1][1] - self.bar_start)
        m[base + max(first, 0):base + self.bar_len] = True

    def _body_allowed(self, m: np.ndarray) -> np.ndarray:
        m = self._body_rules(m)
        for level in (1, 2):  # a voice that must sing here has no pitch between its neighbours clear of
            if m.any():  # parallels: it may cross a neighbour for this step, and failing that move in parallel
                break
            self._relaxed = level
            m = self._body_rules(m)
        self._relaxed = 0
        if self.density is None or not self.v2 or (self.seg < 0 and not self.mix) or self.bar == 0:
            return m  # (the mixed part has no implied track after its first track's note: still steered)
        steered = self._steer_mix(m.copy()) if self.mix else self._steer_density(m.copy())
        return steered if steered.any() else m

    def _steer_density(self, m: np.ndarray) -> np.ndarray:
        """The density band asked for: the part holds between the bounds' onsets (module
        ``seqgen.tokenizers.steering``); a choir voice keeps its notes inside the bar."""
        lo, hi, gap = self._band()
        if self.last == "note":
            self._room_for_owed(m, self.onsets, lo, gap)
        else:
            self._hold_band(m, self.onsets, lo, hi, gap)
        return m

    def _band(self) -> tuple[int, int, int]:
        """The onsets a part of this bar must hold (fewest, most) and the gap that leaves between
        those still owed (an eighth note, or less in a short bar)."""
        lo, hi = density_bounds(self.density, self.bar_len, self.tok.resolution)
        return lo, hi, max(1, min(self.tok.resolution // 2, self.bar_len // max(lo, 1)))

    def _room_for_owed(self, m: np.ndarray, k: int, lo: int, gap: int) -> None:
        """A choir voice's note that opens its (k+1)th onset leaves room after it for those owed."""
        if self._is_voice() and lo > 0:
            owed = lo - k - 1
            room = self.bar_len - self.pos - (owed - 1) * gap - 1 if owed > 0 else self.bar_len - self.pos
            d = self.o["Duration"]
            m[d:d + len(self.tok.durations)] &= self.tok.durations <= room

    def _hold_band(self, m: np.ndarray, k: int, lo: int, hi: int, gap: int) -> None:
        """With k onsets written: below the floor the part does not close and a new position
        leaves room for those still owed; at the ceiling no new position opens."""
        P = self.o["Position"]
        if k < lo:
            end = np.zeros_like(m)
            self._end_of_part(end)
            m &= ~end
            m[P + self.bar_len - (lo - k - 1) * gap:P + self.n_pos] = False
        if k >= hi:
            m[P:P + self.n_pos] = False

    def _body_rules(self, m: np.ndarray) -> np.ndarray:
        K = self._masks
        if self.last == "note":
            m[K["Duration"]] = True
            if self.bars is not None:  # nothing runs past the end of the last bar
                room = (self.bars - self.bar + 1) * self.bar_len - self.pos
                m[self.o["Duration"]:self.o["Duration"] + len(self.tok.durations)] = self.tok.durations <= max(room, 1)
            return m
        if self.in_head and self.bar > 0:
            first = self.bar == 1
            if self.meter is not None:
                m[self.meter] = first
                if first:  # the meter asked for opens the first bar
                    return m
            elif first:  # optional (the decoder reads 4/4 without one)
                m[K["TimeSig"]] = True
            else:  # a new meter, so long as the notes that sound still end inside the piece
                for j in range(len(self.tok.time_sigs)):
                    length = self.tok.bar_steps(j)
                    fits = self.bars is None or self.bar_start + (self.bars - self.bar + 1) * length >= self.max_end
                    m[self.o["TimeSig"] + j] = fits
        if self.bar == 0:  # a body that opens without its Bar (a version-1 prompt of BOS alone)
            m[self.tok.bar_id] = True
            return m
        if self.v3 and self.seg < 0 and not self.mix:
            self._end_of_part(m)
            return m
        if self.mix:
            return self._mix_rules(m)
        if self.v2 and self.seg < 0:
            m[self.o["Track"]] = True
            return m
        if self.last == "pos":
            m[K["Velocity"]] = True  # a new position: nothing sounds here yet
            self._notes(m)
            if not self.v2:
                m[K["Program"]] = True
            if self.seg <= 0:
                m[K["Tempo"]] = True
                m[self.o["PedalOn"] if not self.pedal else self.o["PedalOff"]] = True
            return m
        if self.last in ("vel", "program"):
            self._notes(m)
            if self.last == "program":
                m[K["Velocity"]] = True
            # a velocity is only state to the decoder: moving on after it needs no repair
            self._positions_after(m, self.pos + 1)
            self._end_of_part(m)
            return m
        if self.last == "event":
            m[K["Velocity"]] = len(self.here) < MAX_CHORD
            self._notes(m)
            if not self.v2:
                m[K["Program"]] = True
            m[K["Tempo"] | K["PedalOn"] | K["PedalOff"]] = False
            self._positions_after(m, self.pos + 1)
            self._end_of_part(m)
            return m
        # after a Duration, or at the start of a part: a new position, more notes here, or the end
        self._positions_after(m, self.pos + 1)
        if self.last == "dur" and len(self.here) < MAX_CHORD:
            m[K["Velocity"]] = True
            self._notes(m)
            if not self.v2:
                m[K["Program"]] = True
        self._end_of_part(m)
        return m


class Script:
    """Forced tokens: ``bars[b]`` is what bar b (0-based) opens with (its Bar, meter and the given
    tracks' parts): the rest of them is forced once the model writes that Bar."""

    def __init__(self, bars: list[np.ndarray], bar_id: int):
        self.bars = [np.asarray(b, dtype=np.int64) for b in bars]
        self.bar_id = bar_id
        self.next_bar = 0
        self.queue: deque = deque()
        self.closing = False  # the given part was just written: only what closes it may follow

    def forced(self) -> int | None:
        return self.queue[0] if self.queue else None

    def push(self, i: int) -> None:
        self.closing = False
        if self.queue:
            self.queue.popleft()
            self.closing = not self.queue
            return
        if i == self.bar_id and self.next_bar < len(self.bars):
            self.queue.extend(self.bars[self.next_bar].tolist()[1:])
            self.next_bar += 1


class Constraint:
    """One grammar (and optional script) per row; what ``seqgen.sampling.generate_steps`` takes."""

    def __init__(self, grammars: list[TokenGrammar], scripts: list[Script | None] | None = None):
        self.grammars = grammars
        self.scripts = scripts or [None] * len(grammars)

    def read(self, prompt: np.ndarray) -> None:
        for g, row in zip(self.grammars, np.asarray(prompt, dtype=np.int64)):
            for i in row.tolist():
                g.push(i)

    def allowed(self) -> np.ndarray:
        out = np.stack([g.allowed() for g in self.grammars])
        for r, s in enumerate(self.scripts):
            f = s.forced() if s is not None else None
            if f is not None:
                out[r] = False
                out[r, f] = True
            elif s is not None and s.closing and not self.grammars[r].mix:
                end = np.zeros_like(out[r])
                self.grammars[r]._end_of_part(end)
                out[r] = out[r] & end if (out[r] & end).any() else end
        return out

    def push(self, ids: np.ndarray) -> None:
        for g, s, i in zip(self.grammars, self.scripts, np.asarray(ids).tolist()):
            g.push(int(i))
            if s is not None:
                s.push(int(i))
