"""The token grammar's rules for version 3's mixed part (``seqgen.tokenizers.tracks``): after
the given parts, ``Mix`` and every other track interleaved by onset. A note with no Track token
is in the track ``tracks.mix_track`` implies (the last track at a new position, the one before
after a choir voice, the same one after any other track); a Track token names any track before
the last note's but the implied one. ``TokenGrammar`` takes these as a base class: they read
its state (``seg``: the implied track, ``note_track``, ``mix_onsets``, ``given``).
"""

from __future__ import annotations

import numpy as np

MAX_CHORD = 12  # notes one track (version 1: the bar) may start at one position


class MixedPart:
    def _mixed(self) -> range:
        return range(self.given or 0, len(self.tracks))

    def _mix_tracks(self, m: np.ndarray, after: int) -> None:
        """The Track tokens that may come at this position: tracks not given, before ``after`` in
        the header (an onset lists them from the last up), free to start a note here, other than
        the one implied."""
        for k in self._mixed():
            if k < after and k != self.seg and self._free(k) <= self.pos:
                m[self.o["Track"] + k] = True

    def _implied(self, m: np.ndarray) -> None:
        """A note of the implied track, when it is free here."""
        free = (self.given or 0) <= self.seg < len(self.tracks) and self._free(self.seg) <= self.pos
        if free and len(self.here) < MAX_CHORD:
            m[self._masks["Velocity"]] = True
            self._notes(m)

    def _mix_rules(self, m: np.ndarray) -> np.ndarray:
        K = self._masks
        if self.last == "track":
            m[K["Velocity"]] = True
            self._notes(m)
            return m
        if self.last == "vel":
            self._notes(m)
            return m
        if self.last in ("pos", "event"):
            self._mix_tracks(m, len(self.tracks))
            self._implied(m)
            if self.last == "pos" and self.given == 0:  # tempo and pedal go in the first part
                m[K["Tempo"]] = True
                m[self.o["PedalOn"] if not self.pedal else self.o["PedalOff"]] = True
            if self.last == "event" or not m.any():
                self._positions_after(m, self.pos + 1)
                self._end_of_part(m)
            self._no_voice_left_out(m)
            return m
        if self.last == "dur":  # more of this track's notes here, the next track, a new position, the end
            self._implied(m)
            self._mix_tracks(m, self.note_track)
        self._positions_after(m, self.pos + 1)
        self._end_of_part(m)
        self._no_voice_left_out(m)
        return m

    def _no_voice_left_out(self, m: np.ndarray) -> None:
        """Harmonizing (``voices``): a choir voice that has not sung yet and may start a note at
        this onset sings here: the onset does not close, and no Track token (nor implied note)
        passes over it. So every voice enters with the first onset, and none is left empty (a
        voice that has entered may rest, as a chorale's do; forcing those too made parallels
        and crossings more frequent, since a voice left no clean pitch gives way to the rules).
        """
        if not self.voices or self._relaxed or self.pos < 0 or self.last not in ("pos", "event", "dur"):
            return
        waiting = [k for k in self._mixed() if self._is_voice(k) and not self.sung.get(k) and self._may_start_here(k)]
        if not waiting:
            return
        self._sings_here(m, max(waiting))

    def _steer_mix(self, m: np.ndarray) -> np.ndarray:
        """The grammar's density steering for the mixed part: every track's onsets in the band."""
        lo, hi, gap = self._band()
        counts = {k: self.mix_onsets.get(k, 0) for k in self._mixed()}
        if not counts:
            return m
        if self.last == "note":
            self._room_for_owed(m, counts.get(self.seg, 0), lo, gap)
            return m
        for k, c in counts.items():  # a track at the ceiling opens no new onset
            if c >= hi:
                m[self.o["Track"] + k] = False
                if k == self.seg and not self.here and self.last in ("pos", "event", "dur"):
                    m[self._masks["Velocity"] | self._masks["Pitch"] | self._masks["Drum"]] = False
        self._hold_band(m, min(counts.values()), lo, hi, gap)
        self._no_skipping(m, counts, lo, gap)
        return m

    def _no_skipping(self, m: np.ndarray, counts: dict[int, int], lo: int, gap: int) -> None:
        """A track that owes more onsets than the bar has room for after this position sings
        here: the position does not close, and no Track token (nor implied note) skips it."""
        if self.last not in ("pos", "event", "dur") or self.pos < 0:
            return
        slots = (self.bar_len - 1 - self.pos) // gap
        waiting = [k for k in counts if self._may_start_here(k)]
        must = [k for k in waiting if lo - counts[k] > slots]
        if not must:
            return
        self._sings_here(m, max(must))

    def _may_start_here(self, k: int) -> bool:
        """Track ``k`` is still to come at this onset (after a note, only the tracks before the
        last note's, as an onset lists them from the last up) and is free to start a note."""
        return (self.last != "dur" or k < self.note_track) and self._free(k) <= self.pos

    def _sings_here(self, m: np.ndarray, top: int) -> None:
        """Track ``top`` (and any before it in the onset's order) starts a note at this onset:
        the onset does not close, and no Track token or implied note passes over it."""
        T = self.o["Track"]
        end = np.zeros_like(m)
        self._end_of_part(end)
        m &= ~end
        m[self.o["Position"]:self.o["Position"] + self.n_pos] = False
        m[T:T + top] = False
        if self.seg < top:
            m[self._masks["Velocity"] | self._masks["Pitch"] | self._masks["Drum"]] = False
