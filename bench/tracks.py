"""Voices and tracks, measured: harmonized chorales, a folk tune in four voices, compositions to
order, and the held-out loss per note of runs of either token version, in one table.

    seqgen train bach-chorales --out runs/bach                # the default 5-minute run (version-3 tokens)
    python bench/tracks.py runs/bach                          # every row below
    python bench/tracks.py runs/bach --before runs/bach-v1    # and a version-1 run's rows beside it
    python bench/tracks.py runs/bach --pieces 5 --compositions 5   # quicker
    python bench/tracks.py runs/bach --only requests          # the compositions to order alone
    python bench/tracks.py runs/bach --seeds 10               # and the harmonizations under 10 seeds

Rows:
- harmonizing the sopranos of held-out chorales (the run's own split): soprano kept exactly;
  four voices; share of each voice's notes inside the range that voice spans in the training
  split; parallel fifths and octaves per 100 beats over voice pairs, and voice crossings per 100
  beats (own code: ``seqgen.music.voiceleading``; both voices move, in the same direction, from one
  perfect fifth or octave (mod 12) to another), beside the same counts on the real held-out chorales;
  bits per note of the alto, tenor and bass tokens given the soprano, and with it withheld;
- a tune from outside the chorales (../shared/music/english1.mid) harmonized, then opened by
  music21: how many parts it finds;
- compositions to order (``--compositions`` per request, 8 bars): share in the key asked for
  (Krumhansl-Schmuckler estimate; and music21's, Aarden-Essen, on the MIDI file), in the
  meter, at the tempo, with exactly the instruments, in the density band;
- per run: held-out loss in bits per note (the split's total loss over its notes), the
  compositions' distance to the held-out chorales and their grammar repairs (``seqgen eval``'s).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
FOLK = HERE.parent.parent / "shared" / "music" / "english1.mid"


def role_index(piece, name):
    return next((i for i, t in enumerate(piece.tracks) if t.name.lower() == name), None)


MAX_SEG = 10**6


def bits_per_note(model, ids, tok, tracks_from: int, device="cpu") -> tuple[float, int]:
    """Sum of the losses (nats) of the tokens in the parts of tracks >= ``tracks_from``, and their notes."""
    import torch

    x = torch.as_tensor(np.asarray(ids, dtype=np.int64)[None], device=device)
    with torch.no_grad():
        logits, _ = model(x[:, :-1])
        lp = torch.log_softmax(logits.float(), -1)[0].gather(-1, x[0, 1:, None])[:, 0].cpu().numpy()
    kinds = tok.kinds_of(ids)
    track_kind, pitch_kinds = tok.kind_index("Track"), (tok.kind_index("Pitch"), tok.kind_index("Drum"))
    mix_kind = tok.kind_index("Mix") if tok.version >= 3 else -2  # version 3: the mixed part holds the others
    seg, first_bar = -1, tok.bar_indices(ids)[0]
    mask = np.zeros(len(ids), dtype=bool)
    for i in range(first_bar, len(ids)):
        if kinds[i] == tok.kind_index("Bar"):
            seg = -1
        elif kinds[i] == mix_kind:
            seg = MAX_SEG
        elif kinds[i] == track_kind and seg != MAX_SEG:
            seg = int(tok._value[ids[i]])
        mask[i] = seg >= tracks_from
    sel = mask[1:]
    notes = int(np.isin(kinds, pitch_kinds)[mask].sum())
    return float(-lp[sel].sum()), notes


def run_figures(run: str, pieces: int, compositions: int, only: str | None = None, seeds: int = 0) -> dict:
    if only == "requests":
        from seqgen.engines.load import open_generator

        return requests(open_generator(Path(run)), compositions)
    from seqgen.checkpoint import open_checkpoint, run_data
    from seqgen.data.music import held_out_pieces
    from seqgen.evaluate import evaluate_run

    ev = evaluate_run(Path(run), compositions=compositions, copies=False)
    ckpt = open_checkpoint(Path(run), "best", device="cpu")
    _, parts = run_data(ckpt, None)
    tok = ckpt.tokenizer
    val = np.asarray(parts.val)
    notes = int(np.isin(tok.kinds_of(val), (tok.kind_index("Pitch"), tok.kind_index("Drum"))).sum())
    out = {"version": tok.version, "bits_per_note": ev["val_loss"] * ev["tokens"] / notes / math.log(2),
           "distance": ev["music"]["distance"]["overall"], "repairs": ev["music"]["grammar_repairs"],
           "step": ev["step"]}
    if tok.version < 2:
        return out
    from seqgen.engines.load import open_generator
    from seqgen.music.voiceleading import voice_leading_rates
    from seqgen.voices import harmonize

    gen = open_generator(Path(run))
    held = [tok.decode(ids) for ids in held_out_pieces(val, 0)]
    held = [p for p in held if [t.name for t in p.tracks] == ["Soprano", "Alto", "Tenor", "Bass"]][:pieces]
    train = [tok.decode(ids) for ids in held_out_pieces(np.asarray(parts.train), 0)]
    ranges = {}
    for p in train:
        for k, t in enumerate(p.tracks):
            if (p.track == k).any():
                lo, hi = ranges.get(t.name, (127, 0))
                ranges[t.name] = (min(lo, int(p.pitch[p.track == k].min())), max(hi, int(p.pitch[p.track == k].max())))
    kept = four = 0
    inside, total = 0, 0
    made_par, made_cross, real_par, real_cross = [], [], [], []
    given_nats = withheld_nats = 0.0
    atb_notes = 0
    made = []  # the harmonizations under seed 0
    rng = np.random.default_rng(0)
    for p in held:
        h = harmonize(gen, p, track=0, rng=rng)
        made.append(h)
        sop = lambda q: sorted(zip(q.time[q.track == 0].tolist(), q.pitch[q.track == 0].tolist()))  # noqa: E731
        kept += sop(h) == sop(p)
        names = [t.name for t in h.tracks]
        four += names == ["Soprano", "Alto", "Tenor", "Bass"]
        for k, t in enumerate(h.tracks):
            if t.name in ranges and k > 0:
                lo, hi = ranges[t.name]
                pk = h.pitch[h.track == k]
                inside += int(((pk >= lo) & (pk <= hi)).sum())
                total += len(pk)
        if len(h.tracks) == 4:
            a, b = voice_leading_rates(h)
            made_par.append(a), made_cross.append(b)
        a, b = voice_leading_rates(p)
        real_par.append(a), real_cross.append(b)
        nats, n = bits_per_note(ckpt.model, tok.encode(p, given=1), tok, 1)  # A, T, B after the soprano
        given_nats += nats
        atb_notes += n
        nats, _ = bits_per_note(ckpt.model, tok.encode(p.only_tracks([1, 2, 3])), tok, 0)  # soprano withheld
        withheld_nats += nats
    n_held = max(len(held), 1)
    out.update({"harmonized": len(held), "soprano_kept": kept / n_held, "four_voices": four / n_held,
                "in_range": inside / max(total, 1), "parallels": float(np.mean(made_par)) if made_par else float("nan"),
                "crossings": float(np.mean(made_cross)) if made_cross else float("nan"),
                "real_parallels": float(np.mean(real_par)), "real_crossings": float(np.mean(real_cross)),
                "atb_bits_given": given_nats / max(atb_notes, 1) / math.log(2),
                "atb_bits_withheld": withheld_nats / max(atb_notes, 1) / math.log(2)})
    if seeds:
        out.update(harmonize_seeds(gen, held, seeds, made))
    out.update(folk_parts(gen))
    out.update(requests(gen, compositions))
    return out


def harmonize_seeds(gen, held: list, seeds: int, made: list) -> dict:
    """The held-out sopranos harmonized under seeds 0..N-1 (one generator per seed, over the
    pieces in turn; ``made``: seed 0's, harmonized already): parallels and crossings pooled over
    every beat, and the fewest notes a written voice got (0: a voice left empty)."""
    from seqgen.music.voiceleading import parallel_motions
    from seqgen.voices import harmonize

    def under(seed: int):
        rng = np.random.default_rng(seed)
        return (harmonize(gen, p, track=0, rng=rng) for p in held)

    par = cross = 0
    beats, fewest = 0.0, None
    for h in itertools.chain(made, *(under(seed) for seed in range(1, seeds))):
        found, crossed = parallel_motions(h)
        par, cross, beats = par + len(found), cross + crossed, beats + h.end / h.tpq
        least = min((int((h.track == k).sum()) for k in range(1, len(h.tracks))), default=0)
        fewest = least if fewest is None else min(fewest, least)
    return {f"parallels, seeds 0-{seeds - 1}": f"{par} in {beats:,.0f} beats ({100 * par / max(beats, 1):.3f} per 100)",
            f"crossings, seeds 0-{seeds - 1}": f"{100 * cross / max(beats, 1):.2f} per 100 beats",
            f"fewest notes of a written voice, seeds 0-{seeds - 1}": fewest}


def folk_parts(gen) -> dict:
    if not FOLK.exists():
        return {}
    from music21 import converter

    from seqgen.compose import load_piece
    from seqgen.music.files import write_piece
    from seqgen.voices import harmonize

    h = harmonize(gen, load_piece(FOLK), rng=np.random.default_rng(1))
    with tempfile.TemporaryDirectory() as d:
        path = write_piece(h, Path(d) / "folk.mid")
        parts = len(converter.parse(str(path)).parts)
    return {"folk_parts": parts, "folk_tracks": ", ".join(t.name for t in h.tracks)}


def music21_key(piece) -> str:
    """The key music21 finds in the MIDI file of ``piece`` (its default: Aarden-Essen profiles)."""
    from music21 import converter

    from seqgen.music.files import write_piece

    with tempfile.TemporaryDirectory() as d:
        key = converter.parse(str(write_piece(piece, Path(d) / "k.mid"))).analyze("key")
    return f"{key.tonic.name.replace('-', 'b')} {key.mode}"


def most_common(found: list[str], n: int = 3) -> str:
    """'F major 9, D minor 4, A minor 3': what was found most often, with counts."""
    names, counts = np.unique(found, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:n]
    return ", ".join(f"{names[i]} {counts[i]}" for i in order)


def requests(gen, n: int) -> dict:
    from seqgen.compose import fresh_prompt, grammar_options, sample_bars
    from seqgen.music.controls import (DENSITY_NAMES, Controls, density_band, parse_instruments, parse_key,
                                       tempo_band)
    from seqgen.music.stats import key_name

    tok = gen.tokenizer
    asks = [("key D minor", Controls(key=parse_key("D minor")), None),
            ("key G major", Controls(key=parse_key("G major")), None),
            ("key F# major", Controls(key=parse_key("F# major")), None),
            ("meter 3/4", Controls(meter=(3, 4)), None),
            ("tempo 90", Controls(tempo_band=tempo_band(90)), None),
            ("instruments soprano,alto,tenor,bass", Controls(), parse_instruments("soprano,alto,tenor,bass-voice")),
            ("density high", Controls(density=2), None), ("density medium", Controls(density=1), None),
            ("density low", Controls(density=0), None)]
    out = {}
    for label, ctl, tracks in asks:
        grammar = grammar_options(ctl, tracks)
        rows = sample_bars(gen, fresh_prompt(tok, ctl, tracks), 8, rng=np.random.default_rng(3), batch=n,
                           grammar=grammar)
        made = [tok.decode(r).with_tempo(90) if ctl.tempo_band is not None else tok.decode(r) for r in rows]
        if ctl.key is not None:
            from seqgen.music.controls import key_text

            hit = [key_name(p) == key_text(ctl.key) for p in made]
            out[f"found {label}"] = most_common([key_name(p) for p in made])
            out[f"ask {label} (music21 key)"] = float(np.mean([music21_key(p) == key_text(ctl.key) for p in made]))
        elif ctl.meter is not None:
            hit = [p.time_sigs[0, 1:].tolist() == [3, 4] for p in made]
        elif ctl.tempo_band is not None:
            hit = [round(p.qpm_at(0)) == 90 for p in made]
        elif tracks:
            hit = [[t.name for t in p.tracks] == [t.name for t in tracks] for p in made]
        else:
            hit = [DENSITY_NAMES[density_band(p)] == DENSITY_NAMES[ctl.density] for p in made]
            out[f"found {label}"] = most_common([DENSITY_NAMES[density_band(p)] for p in made])
        out[f"ask {label}"] = float(np.mean(hit))
        out[f"repairs {label}"] = int(sum(p.info["dropped_tokens"] + p.info["notes_cut"] for p in made))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--before", help="a version-1 run of the same corpus, for the last rows")
    ap.add_argument("--pieces", type=int, default=20)
    ap.add_argument("--compositions", type=int, default=20)
    ap.add_argument("--only", choices=["requests"], help="only the rows of compositions to order")
    ap.add_argument("--seeds", type=int, default=0, help="also harmonize the held-out sopranos under this many seeds")
    args = ap.parse_args()
    cols = {"after": run_figures(args.run, args.pieces, args.compositions, args.only, args.seeds)}
    if args.before:
        cols["before"] = run_figures(args.before, args.pieces, args.compositions, args.only)
    keys = list(dict.fromkeys(k for c in cols.values() for k in c))
    heads = [f"{name} ({args.before if name == 'before' else args.run})" for name in cols]
    print("| measure | " + " | ".join(heads) + " |")
    print("| --- | " + " | ".join("---" for _ in cols) + " |")
    for k in keys:
        vals = [cols[c].get(k, "") for c in cols]
        print(f"| {k} | " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in vals) + " |")


if __name__ == "__main__":
    main()
