"""The default chorale run with MIDI tokens of version 1 (the old default) or a later one: the
same `seqgen train bach-chorales` defaults, only the tokenizer differs, then `seqgen eval`.

    python bench/chorale_versions.py --version 1 --out runs/v1 --time 5m --threads 1 &
    python bench/chorale_versions.py --version 2 --out runs/v2 --time 5m --threads 1 &
    wait

`seqgen train` has no option for the tokenizer version (a new run always gets today's), so this
trains through the library: ``load_corpus`` with ``MidiTokenizer(version=N)``, then ``Trainer``,
as the command does. It then runs `seqgen eval RUN --json --compositions N` (best checkpoint,
whole held-out split) and prints one line: held-out bits per note (the split's total loss in
bits over its notes: comparable across tokenizers, unlike per token), bits per token, and the
compositions' distance to the held-out chorales. Run both versions at the same time with one
thread each, so a shared machine slows them alike. The two tokenizers spell a chorale with
different numbers of tokens, so the splits (a share of the tokens) may hold out different pieces:

    python bench/chorale_versions.py --common runs/v1 runs/v2   # bits per note on the pieces both hold out
    python bench/chorale_versions.py --by-context runs/v1 runs/v2   # where the second's pitches cost more
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train(version: int, out: Path, seconds: float, threads: int | None, corpus: str) -> None:
    from seqgen.config import TrainConfig
    from seqgen.data.load import load_corpus
    from seqgen.tokenizers.midi import MidiTokenizer
    from seqgen.train import Trainer

    data = load_corpus(corpus, tokenizer=MidiTokenizer(version=version))
    Trainer(TrainConfig(time=seconds, threads=threads), data, out).run()


def held_out_bits(run: Path):
    """The best checkpoint's held-out split, read as `seqgen eval` reads it (the state carried
    over the split): (tokenizer, tokens, bits of predicting each next token, pieces as (name,
    first index, end index))."""
    import math

    import numpy as np

    from seqgen.checkpoint import open_checkpoint, run_data
    from seqgen.losses import token_losses

    ckpt = open_checkpoint(run, "best")
    _, parts = run_data(ckpt)
    val = np.asarray(parts.val)
    bits = np.asarray(token_losses(ckpt.model, parts.val, chunk=ckpt.train.window), dtype=np.float64) / math.log(2)
    starts = list(np.flatnonzero(val == 0)) + [len(val)]  # each held-out piece begins with BOS
    if len(starts) - 1 != len(parts.held_out):
        raise SystemExit(f"{run}: {len(starts) - 1} pieces in the split, {len(parts.held_out)} names")
    return ckpt.tokenizer, val, bits, list(zip(parts.held_out, starts[:-1], starts[1:]))  # bits[i] predicts val[i + 1]


def per_piece(run: Path) -> dict[str, tuple[float, int, dict]]:
    """Held-out piece name -> (its total loss in bits, its notes, bits by kind): to compare two
    runs on the pieces both hold out."""
    import numpy as np

    from seqgen.tokenizers.midi import KINDS

    tok, val, losses, pieces = held_out_bits(run)
    kinds = tok.kinds_of(val)
    notes = np.isin(kinds, [tok.kind_index("Pitch"), tok.kind_index("Drum")])
    names = {k: KINDS[k] if k >= 0 else "?" for k in np.unique(kinds).tolist()}
    out = {}
    for name, a, b in pieces:
        lo = max(a - 1, 0)  # the loss of predicting the piece's first token comes from the token before it
        bits = losses[lo : b - 1]
        of = kinds[lo + 1 : b]  # the kind of each token predicted
        out[name] = (float(bits.sum()), int(notes[a:b].sum()),
                     {names[k]: float(bits[of == k].sum()) for k in np.unique(of).tolist()})
    return out


def common(runs: list[Path]) -> None:
    """Bits per note of each run over the held-out pieces all of them hold out, then the same
    split by the kind of token predicted."""
    tables = [per_piece(r) for r in runs]
    shared = set.intersection(*(set(t) for t in tables))
    for run, t in zip(runs, tables):
        total, notes = (sum(t[n][i] for n in shared) for i in (0, 1))
        by_kind: dict[str, float] = {}
        for n in shared:
            for k, v in t[n][2].items():
                by_kind[k] = by_kind.get(k, 0.0) + v
        print(f"{run}  {len(shared)} shared held-out pieces of {len(t)}  {notes} notes  "
              f"bits/note {total / notes:.4f}")
        ranked = sorted(by_kind.items(), key=lambda x: -x[1])
        print("    by kind: " + "  ".join(f"{k} {v / notes:.3f}" for k, v in ranked if v / notes >= 0.005))


def pitch_bits(run: Path) -> dict[str, tuple]:
    """Held-out piece name -> (bits of each Pitch token, in order; the kind of the token before it)."""
    import numpy as np

    tok, val, bits, pieces = held_out_bits(run)
    kinds, pitch = tok.kinds_of(val), tok.kind_index("Pitch")
    out = {}
    for name, a, b in pieces:
        at = [i for i in range(max(a, 1), b) if kinds[i] == pitch]
        out[name] = (bits[np.asarray(at, dtype=np.int64) - 1],
                     [tok.token_name(int(val[i - 1])).split("_")[0] for i in at])
    return out


def by_context(runs: list[Path]) -> None:
    """The second run's extra bits per pitch over the first's, note for note on the pieces both
    hold out with as many pitches (both versions write a chord from the bass up): by stretch of
    the piece and by the token the second run's pitch follows."""
    import numpy as np

    first, second = (pitch_bits(r) for r in runs)
    shared = [n for n in sorted(set(first) & set(second)) if len(first[n][0]) == len(second[n][0])]
    stretch: dict[int, list] = {}
    after: dict[str, list] = {}
    for n in shared:
        (a, _), (b, before) = first[n], second[n]
        for i, (x, y, k) in enumerate(zip(a, b, before)):
            stretch.setdefault(min(i // 40, 5), []).append(y - x)
            after.setdefault(k, []).append((x, y))
    print(f"{len(shared)} pieces aligned note for note; extra bits per pitch of {runs[1]} over {runs[0]}")
    for k, v in sorted(stretch.items()):
        print(f"    pitches {40 * k}-{40 * k + 39 if k < 5 else 'end'}: {np.mean(v):+.3f} ({len(v)})")
    for k, v in sorted(after.items(), key=lambda kv: -len(kv[1])):
        x, y = np.asarray(v).T
        gap = y.mean() - x.mean()
        print(f"    after {k:<9} {len(v):5d} pitches  {x.mean():.3f} against {y.mean():.3f}  {gap:+.3f}")


def main() -> None:
    from seqgen.config import parse_duration

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", type=int, choices=(1, 2, 3))
    ap.add_argument("--out", type=Path)
    ap.add_argument("--common", type=Path, nargs="+", help="runs to compare on the held-out pieces they share")
    ap.add_argument("--by-context", type=Path, nargs=2, help="two runs: where the second's pitches cost more bits")
    ap.add_argument("--time", default="5m")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--corpus", default="bach-chorales")
    ap.add_argument("--compositions", type=int, default=20)
    ap.add_argument("--eval-only", action="store_true", help="evaluate a run trained before")
    ap.add_argument("--train-only", action="store_true", help="train, and leave the evaluation for later")
    a = ap.parse_args()
    if a.common:
        common(a.common)
        return
    if a.by_context:
        by_context(a.by_context)
        return
    if a.version is None or a.out is None:
        raise SystemExit("give --version and --out (or --common RUN RUN)")
    if not a.eval_only:
        train(a.version, a.out, parse_duration(a.time), a.threads, a.corpus)
    if a.train_only:
        return
    cmd = [sys.executable, "-m", "seqgen", "eval", str(a.out), "--json", "--compositions", str(a.compositions),
           "--no-check-copies"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.strip()[-2000:]}")
    ev = json.loads(proc.stdout)
    (a.out / "eval.json").write_text(json.dumps(ev, indent=1))
    music = ev.get("music", {})
    print(f"version {a.version}  step {ev['step']}  bits/note {ev.get('val_bits_per_note', float('nan')):.4f}  "
          f"bits/token {ev['val_bits_per_token']:.4f}  notes {ev.get('val_notes')}  tokens {ev['tokens']}  "
          f"distance {music.get('distance', {}).get('overall', float('nan')):.4f} "
          f"in_key {music.get('distance', {}).get('in_key', float('nan')):.4f}  "
          f"repairs {music.get('grammar_repairs')}", flush=True)


if __name__ == "__main__":
    main()
